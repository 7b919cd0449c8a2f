//! HTTPS: the listener's certificate (rustls, HTTP/2 by ALPN beside HTTP/1.1), swapped without a
//! restart when its files change or on SIGHUP, and `Strict-Transport-Security` on every answer.
//! Plain HTTP stays the default, for local use and behind a TLS-terminating proxy.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use axum::http::HeaderValue;
use axum_server::tls_rustls::RustlsConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM file with the certificate chain, leaf first. Empty (the default): plain HTTP.
    pub cert_file: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// How often the two files are checked for a new certificate (also reloaded on SIGHUP).
    pub reload_check_secs: u64,
    /// `Strict-Transport-Security: max-age=…` sent while TLS is on; 0 sends none.
    pub hsts_max_age_secs: u64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self { cert_file: String::new(), key_file: String::new(), reload_check_secs: 10, hsts_max_age_secs: 31_536_000 }
    }
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty() || !self.key_file.is_empty()
    }

    /// Both files or neither; checked with the rest of the configuration.
    pub fn validate(&self) -> Result<(), String> {
        match (self.cert_file.is_empty(), self.key_file.is_empty()) {
            (false, true) | (true, false) => Err("tls.cert_file and tls.key_file are set together".into()),
            _ if self.enabled() && self.reload_check_secs == 0 => Err("tls.reload_check_secs must be positive".into()),
            _ => Ok(()),
        }
    }

    /// The header every answer carries while TLS is on.
    pub fn strict_transport_security(&self) -> Option<HeaderValue> {
        (self.enabled() && self.hsts_max_age_secs > 0)
            .then(|| HeaderValue::from_str(&format!("max-age={}", self.hsts_max_age_secs)).ok())
            .flatten()
    }
}

/// The served certificate; cloning shares it, so a reload reaches every connection accepted after.
pub struct Certificate {
    config: RustlsConfig,
    settings: TlsSettings,
    /// Registered when the certificate is loaded, before the server says it is listening: a
    /// SIGHUP sent once it listens must reload, never kill (the default action).
    hangup: tokio::signal::unix::Signal,
}

impl Certificate {
    /// Reads and checks the chain and key (a key that does not belong to the leaf is refused).
    pub async fn load(settings: &TlsSettings) -> std::io::Result<Self> {
        crate::install_crypto_provider();
        let config = RustlsConfig::from_pem_file(&settings.cert_file, &settings.key_file).await?;
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        Ok(Self { config, settings: settings.clone(), hangup })
    }

    pub fn rustls(&self) -> RustlsConfig {
        self.config.clone()
    }

    /// Reloads the files when they change (size or modification time) and on SIGHUP. A pair
    /// that does not load (say, the certificate written before its key) keeps the current one
    /// serving and is retried on the next change.
    pub async fn reload_on_change(mut self) {
        let files = [PathBuf::from(&self.settings.cert_file), PathBuf::from(&self.settings.key_file)];
        let stamp = || files.iter().map(|f| std::fs::metadata(f).map(|m| (m.len(), m.modified().ok())).ok()).collect();
        let mut seen: Vec<Option<(u64, Option<SystemTime>)>> = stamp();
        let mut pending = None;
        let mut tick = tokio::time::interval(Duration::from_secs(self.settings.reload_check_secs.max(1)));
        loop {
            let trigger = tokio::select! {
                _ = tick.tick() => {
                    let now = stamp();
                    if now == seen {
                        continue;
                    }
                    // Remembered only once loaded (below): a pair that failed is tried again on
                    // every check, so a key written within the same second still gets picked up.
                    pending = Some(now);
                    "file change"
                }
                Some(()) = self.hangup.recv() => "SIGHUP",
            };
            let reloaded = self.config.reload_from_pem_file(&files[0], &files[1]).await;
            let result = if reloaded.is_ok() { "ok" } else { "error" };
            metrics::counter!("tls_certificate_reloads_total", "result" => result).increment(1);
            match reloaded {
                Ok(()) => {
                    if let Some(now) = pending.take() {
                        seen = now;
                    }
                    tracing::info!(trigger, "TLS certificate reloaded")
                }
                Err(error) => {
                    tracing::warn!(trigger, %error, "TLS certificate reload failed; the current certificate stays")
                }
            }
        }
    }
}
