//! Typed settings: defaults < `onboard.toml` < `ONBOARD_*` environment (and `DATABASE_URL`).

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::AuthSettings;
use crate::auth::passwords::PasswordSettings;
use crate::core::signup::SignupSettings;
use crate::http::HttpSettings;
use crate::http::idempotency::IdempotencySettings;
use crate::jobs::JobSettings;
use crate::mail::MailSettings;
use crate::store::DbSettings;
use crate::telemetry::LogSettings;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP server binds to.
    pub listen: SocketAddr,
    /// `sqlite://PATH` (embedded default) or `postgres://…`.
    pub database_url: String,
    pub log: LogSettings,
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub db: DbSettings,
    pub idempotency: IdempotencySettings,
    pub jobs: JobSettings,
    pub sanctions: SanctionsSettings,
    pub cip: CipSettings,
    pub signup: SignupSettings,
    pub password: PasswordSettings,
    pub mail: MailSettings,
    /// The key-encryption key that seals provider secrets and token-signing keys at rest.
    pub secrets: crate::kek::SecretsSettings,
    pub kyc: crate::kyc::KycSettings,
    /// Outbound partner webhooks (delivery, retries, address policy).
    pub webhooks: crate::webhooks::WebhookSettings,
    /// Payment providers (Stripe's API base, timeouts, the charge lease, the renewal sweep).
    pub payments: crate::payments::PaymentSettings,
    /// HTTPS on the listener (off by default).
    pub tls: crate::http::tls::TlsSettings,
    /// Consent codes (seed 002's OTP consents): lifetime, attempts, resend interval.
    pub consents: crate::core::consents::ConsentSettings,
    /// The staff console under `/admin/ui/`: session lifetimes, case holds.
    pub console: crate::core::console::ConsoleSettings,
    /// Outbound SMS (Twilio) for consent codes.
    pub sms: crate::sms::SmsSettings,
    /// Heartbeats, and when a silent node's claims are released.
    pub node: crate::nodes::NodeSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CipSettings {
    /// Workers per validator kind (personal, address, email, phone, sanctions) and for provisioning.
    pub concurrency: usize,
}

impl Default for CipSettings {
    fn default() -> Self {
        Self { concurrency: 4 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SanctionsSettings {
    /// A list directory `serve` loads when the database has no list yet; "" (the default) loads
    /// the snapshot built into the binary instead.
    pub autoload_dir: String,
    /// Whether `serve` loads the built-in snapshot when the database has no list and no
    /// `autoload_dir` is set (off only for tests and for deployments that load lists themselves).
    pub builtin_snapshot: bool,
    /// How often a node checks for a list version loaded elsewhere.
    pub refresh_secs: u64,
    /// Thresholds of the matcher.
    pub policy: crate::sanctions::MatchPolicy,
    /// Threads that match a re-screening page (0: one less than the CPUs, at least one, so that
    /// requests keep a core while a list change re-screens everyone).
    pub rescreen_threads: usize,
}

impl Default for SanctionsSettings {
    fn default() -> Self {
        Self {
            autoload_dir: String::new(),
            builtin_snapshot: true,
            refresh_secs: 60,
            policy: Default::default(),
            rescreen_threads: 0,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://onboard.db".into(),
            log: LogSettings::default(),
            http: HttpSettings::default(),
            auth: AuthSettings::default(),
            db: DbSettings::default(),
            idempotency: IdempotencySettings::default(),
            jobs: JobSettings::default(),
            sanctions: SanctionsSettings::default(),
            cip: CipSettings::default(),
            signup: SignupSettings::default(),
            password: PasswordSettings::default(),
            mail: MailSettings::default(),
            secrets: Default::default(),
            kyc: Default::default(),
            webhooks: Default::default(),
            payments: Default::default(),
            tls: Default::default(),
            consents: Default::default(),
            console: Default::default(),
            sms: Default::default(),
            node: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration: `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}

impl Settings {
    /// Loads the layers. `file` is read when it exists; a missing default file is not an error,
    /// but an explicitly named one is.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError::Invalid {
                    key: "--config",
                    problem: format!("file {} does not exist", path.display()),
                });
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => figment = figment.merge(Toml::file("onboard.toml")),
        }
        let figment = figment
            .merge(Env::prefixed("ONBOARD_").split("__"))
            .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database_url".into()));
        let settings: Settings = figment.extract().map_err(describe)?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url.as_str();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::Invalid {
                key: "database_url",
                problem: "must start with sqlite: or postgres://".into(),
            });
        }
        if self.http.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid { key: "http.max_body_bytes", problem: "must be at least 1024".into() });
        }
        if !(60..=86_400).contains(&self.auth.access_token_ttl_secs) {
            return Err(ConfigError::Invalid {
                key: "auth.access_token_ttl_secs",
                problem: "must be between 60 and 86400".into(),
            });
        }
        if self.db.batch_writers == 0 || self.db.batch_writers >= self.db.max_connections as usize {
            return Err(ConfigError::Invalid {
                key: "db.batch_writers",
                problem: "must be at least 1 and less than db.max_connections".into(),
            });
        }
        let signup = &self.signup;
        if !(4..=9).contains(&signup.code_length) {
            return Err(ConfigError::Invalid { key: "signup.code_length", problem: "must be between 4 and 9".into() });
        }
        if signup.max_attempts == 0 || signup.code_ttl_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "signup.max_attempts",
                problem: "max_attempts and code_ttl_secs must be positive".into(),
            });
        }
        if signup.per_ip_per_minute == 0 || signup.per_email_per_minute == 0 || signup.per_partner_per_minute == 0 {
            return Err(ConfigError::Invalid {
                key: "signup.per_ip_per_minute",
                problem: "rate limits must be positive".into(),
            });
        }
        if !(60..=86_400).contains(&signup.access_token_ttl_secs) || signup.refresh_token_ttl_secs < 60 {
            return Err(ConfigError::Invalid {
                key: "signup.access_token_ttl_secs",
                problem: "must be between 60 and 86400 (refresh tokens at least 60)".into(),
            });
        }
        let password = &self.password;
        if password.memory_kib < 8 * 1024
            || password.iterations == 0
            || password.parallelism == 0
            || password.queue == 0
        {
            return Err(ConfigError::Invalid {
                key: "password.memory_kib",
                problem: "memory_kib ≥ 8192, iterations, parallelism and queue ≥ 1".into(),
            });
        }
        self.tls.validate().map_err(|problem| ConfigError::Invalid { key: "tls.cert_file", problem })?;
        crate::mail::MailTransport::parse(&self.mail.url)
            .map_err(|problem| ConfigError::Invalid { key: "mail.url", problem })?;
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::Invalid {
                key: "mail.from",
                problem: "must be a mailbox like `Name <a@b.c>`".into(),
            });
        }
        crate::kek::Kek::from_settings(&self.secrets)
            .map_err(|e| ConfigError::Invalid { key: "secrets.kek", problem: e.to_string() })?;
        if !(60..=86_400).contains(&self.kyc.access_token_ttl_secs) || self.kyc.reconcile_after_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "kyc.access_token_ttl_secs",
                problem: "must be between 60 and 86400 (and kyc.reconcile_after_secs positive)".into(),
            });
        }
        if !(self.kyc.sumsub_base_url.starts_with("https://") || self.kyc.sumsub_base_url.starts_with("http://")) {
            return Err(ConfigError::Invalid { key: "kyc.sumsub_base_url", problem: "must be an http(s) URL".into() });
        }
        self.webhooks.validate().map_err(|problem| ConfigError::Invalid { key: "webhooks", problem })?;
        if self.db.max_connections == 0 {
            return Err(ConfigError::Invalid { key: "db.max_connections", problem: "must be at least 1".into() });
        }
        Ok(())
    }
}

/// Names each bad key the way the docs spell it (`http.max_body_bytes`) and where it came from.
fn describe(errors: figment::Error) -> ConfigError {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|e| {
            let key = e.path.iter().map(|p| p.to_lowercase()).collect::<Vec<_>>().join(".");
            let source = e.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default();
            if key.is_empty() { format!("{}{source}", e.kind) } else { format!("`{key}`{source}: {}", e.kind) }
        })
        .collect();
    ConfigError::Load(lines.join("; "))
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return its large error type
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ONBOARD_HTTP__MAX_BODY_BYTES", "lots");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("max_body_bytes"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file("onboard.toml", "database_url = \"mysql://x\"")?;
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("database_url"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file("onboard.toml", "[http]\nmax_body_byte = 5")?;
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("max_body_byte"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("onboard.toml", "listen = \"127.0.0.1:9000\"\n[auth]\naccess_token_ttl_secs = 600")?;
            jail.set_env("ONBOARD_LISTEN", "127.0.0.1:9001");
            jail.set_env("DATABASE_URL", "postgres://localhost/x");
            let s = Settings::load(None).unwrap();
            assert_eq!(s.listen.port(), 9001);
            assert_eq!(s.auth.access_token_ttl_secs, 600);
            assert_eq!(s.database_url, "postgres://localhost/x");
            Ok(())
        });
    }
}
