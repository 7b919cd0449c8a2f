//! Outbound e-mail: the messages Onboard sends, and how they leave.
//!
//! Messages are rendered and sent by the durable job runner (`mail.send` jobs written in the
//! same transaction as what they announce), through lettre's SMTP client over rustls. The `log`
//! and `file` transports exist for development only and must be chosen explicitly.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::jobs::{JobOutcome, JobRegistry};
use crate::pii;
use crate::store::{ClaimedJob, Store};

/// Outbound e-mail (sign-up codes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// `smtp://[user:pass@]host[:port][?tls=required|opportunistic]` (STARTTLS),
    /// `smtps://…` (implicit TLS), or the development-only `log` (the message goes to the log,
    /// codes included) or `file:///dir` (one `.eml` file per message).
    pub url: String,
    /// `From:` of every message.
    pub from: String,
    /// Seconds one SMTP conversation may take.
    pub timeout_secs: u64,
    /// Concurrent deliveries of this node.
    pub concurrency: usize,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            url: "smtp://localhost:25".into(),
            from: "Onboard <no-reply@localhost>".into(),
            timeout_secs: 30,
            concurrency: 4,
        }
    }
}

/// The job kind that delivers one `Outgoing` message.
pub const MAIL_JOB: &str = "mail.send";

/// Where messages go, parsed from `mail.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailTransport {
    /// `smtp://…` or `smtps://…`, handed to lettre as is.
    Smtp(String),
    /// Development: the whole message is logged.
    Log,
    /// Development: one `.eml` file per message in this directory.
    File(PathBuf),
}

impl MailTransport {
    pub fn parse(url: &str) -> Result<Self, String> {
        if url == "log" {
            return Ok(Self::Log);
        }
        if let Some(dir) = url.strip_prefix("file://") {
            if dir.is_empty() {
                return Err("file:// needs a directory".into());
            }
            return Ok(Self::File(PathBuf::from(dir)));
        }
        if url.starts_with("smtp://") || url.starts_with("smtps://") {
            AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| format!("not a usable SMTP URL: {e}"))?;
            return Ok(Self::Smtp(url.to_owned()));
        }
        Err("must be smtp://…, smtps://…, log or file:///dir".into())
    }
}

/// A message Onboard sends; this is the `mail.send` job's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum Outgoing {
    /// Step 1 of seed 003: the code that completes the sign-up.
    SignupCode { to: String, partner: String, code: String, valid_minutes: u64 },
    /// Step 1 for an address that already has an account: no code, a pointer to sign in.
    AccountExists { to: String, partner: String },
    /// Seed 002: the code that confirms a consent (`document`: "privacy notice", "contract").
    ConsentCode { to: String, partner: String, document: String, code: String, valid_minutes: u64 },
    /// To a partner's contact address: one of its webhook endpoints was turned off.
    WebhookEndpointDisabled { to: String, partner: String, endpoint: String, url: String, reason: String },
}

impl Outgoing {
    fn to(&self) -> &str {
        match self {
            Self::SignupCode { to, .. }
            | Self::AccountExists { to, .. }
            | Self::ConsentCode { to, .. }
            | Self::WebhookEndpointDisabled { to, .. } => to,
        }
    }

    /// The message with its code masked, for places a code must not reach.
    fn without_code(&self) -> Self {
        match self {
            Self::SignupCode { to, partner, code, valid_minutes } => Self::SignupCode {
                to: to.clone(),
                partner: partner.clone(),
                code: "•".repeat(code.chars().count()),
                valid_minutes: *valid_minutes,
            },
            Self::ConsentCode { to, partner, document, code, valid_minutes } => Self::ConsentCode {
                to: to.clone(),
                partner: partner.clone(),
                document: document.clone(),
                code: "•".repeat(code.chars().count()),
                valid_minutes: *valid_minutes,
            },
            other => other.clone(),
        }
    }

    fn render(&self) -> (String, String) {
        match self {
            Self::SignupCode { partner, code, valid_minutes, .. } => (
                format!("{code} is your {partner} confirmation code"),
                format!(
                    "Your confirmation code is {code}\n\n\
                     Enter it to finish creating your {partner} account. It is valid for \
                     {valid_minutes} minutes.\n\n\
                     If you did not ask for an account, ignore this message; nothing will be created.\n"
                ),
            ),
            Self::ConsentCode { partner, document, code, valid_minutes, .. } => (
                format!("{code} is your {partner} code to accept the {document}"),
                format!(
                    "Your code is {code}\n\n\
                     Enter it to accept the {partner} {document}. It is valid for {valid_minutes} \
                     minutes. Do not share it.\n\n\
                     If you did not ask for it, ignore this message; nothing will be accepted.\n"
                ),
            ),
            Self::WebhookEndpointDisabled { partner, endpoint, url, reason, .. } => (
                format!("{partner}: webhook endpoint {endpoint} was disabled"),
                format!(
                    "Onboard stopped sending events to your webhook endpoint {endpoint}\n\
                     ({url}): {reason}.\n\n\
                     Events are kept. Once the endpoint answers again, enable it \
                     (PATCH /partner/webhooks/{endpoint} {{\"enabled\": true}}) and send what it \
                     missed (POST /partner/webhooks/replay-failed).\n"
                ),
            ),
            Self::AccountExists { partner, .. } => (
                format!("You already have a {partner} account"),
                format!(
                    "Someone, hopefully you, tried to create a {partner} account with this e-mail \
                     address, but an account with it already exists.\n\n\
                     Sign in instead, or reset your password if you have forgotten it.\n\n\
                     If this was not you, ignore this message; nothing has changed.\n"
                ),
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// May succeed later (connection refused, 4xx): retried with backoff.
    #[error("{0}")]
    Transient(String),
    /// Will never succeed (bad address, 5xx): dead-lettered.
    #[error("{0}")]
    Permanent(String),
}

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Log,
    File(AsyncFileTransport<Tokio1Executor>),
}

/// Sends `Outgoing` messages through the configured transport. Cheap to clone (the SMTP
/// connection pool is shared).
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

impl Mailer {
    pub fn new(settings: &MailSettings) -> Result<Self, String> {
        let from = settings.from.parse::<Mailbox>().map_err(|e| format!("mail.from: {e}"))?;
        let transport = match MailTransport::parse(&settings.url)? {
            MailTransport::Smtp(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
                    .map_err(|e| e.to_string())?
                    .timeout(Some(Duration::from_secs(settings.timeout_secs.max(1))))
                    .build(),
            ),
            MailTransport::Log => Transport::Log,
            MailTransport::File(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| format!("mail.url: cannot create {}: {e}", dir.display()))?;
                Transport::File(AsyncFileTransport::new(dir))
            }
        };
        Ok(Self { from, transport })
    }

    pub async fn send(&self, outgoing: &Outgoing) -> Result<(), MailError> {
        let to = outgoing
            .to()
            .parse::<Mailbox>()
            .map_err(|e| MailError::Permanent(format!("recipient is not a mailbox: {e}")))?;
        let (subject, body) = outgoing.render();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.clone())
            .map_err(|e| MailError::Permanent(e.to_string()))?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(|e| {
                if e.is_permanent() { MailError::Permanent(e.to_string()) } else { MailError::Transient(e.to_string()) }
            }),
            Transport::Log => {
                // Codes never reach a log, not even in development: a live partner's code in a
                // log file would complete a sign-up for whoever reads it (`file://` keeps them).
                let (_, shown) = outgoing.without_code().render();
                tracing::info!(to = %pii::MaskedEmail(outgoing.to()), body = %shown, "mail (log transport, development only)");
                Ok(())
            }
            Transport::File(files) => {
                files.send(message).await.map(drop).map_err(|e| MailError::Transient(e.to_string()))
            }
        }
    }
}

/// Registers the `mail.send` handler. A delivered message's payload is cleared in the same
/// transaction that completes the job, so a code never outlives its delivery in the job table.
pub fn register(registry: &mut JobRegistry, store: &Store, mailer: &Mailer, concurrency: usize) {
    let (store, mailer) = (store.clone(), mailer.clone());
    registry.register(MAIL_JOB, concurrency, move |job: ClaimedJob| {
        let (store, mailer) = (store.clone(), mailer.clone());
        async move {
            let outgoing: Outgoing = match serde_json::from_str(&job.payload) {
                Ok(outgoing) => outgoing,
                Err(e) => return JobOutcome::Fail(format!("payload is not a message: {e}")),
            };
            match mailer.send(&outgoing).await {
                Ok(()) => {
                    tracing::info!(to = %pii::MaskedEmail(outgoing.to()), job = job.id, "mail delivered");
                    match store.complete_job_redacted(&job, crate::domain::now_ms()).await {
                        Ok(_) => JobOutcome::Committed,
                        Err(e) => JobOutcome::Retry(e.to_string()),
                    }
                }
                Err(MailError::Transient(e)) => JobOutcome::Retry(e),
                Err(MailError::Permanent(e)) => JobOutcome::Fail(e),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_endpoint_notice_says_what_to_do() {
        let notice = Outgoing::WebhookEndpointDisabled {
            to: "ops@partner.example".into(),
            partner: "Banco".into(),
            endpoint: "we_1".into(),
            url: "https://hooks.partner.example/onboard".into(),
            reason: "the endpoint answered 410 Gone".into(),
        };
        let (subject, body) = notice.render();
        assert_eq!(subject, "Banco: webhook endpoint we_1 was disabled");
        assert!(body.contains("https://hooks.partner.example/onboard") && body.contains("410 Gone"), "{body}");
        assert!(body.contains("replay-failed"), "{body}");
        assert_eq!(notice.to(), "ops@partner.example");
    }

    #[test]
    fn transports_parse_from_urls() {
        assert_eq!(MailTransport::parse("log"), Ok(MailTransport::Log));
        assert_eq!(MailTransport::parse("file:///tmp/mail"), Ok(MailTransport::File("/tmp/mail".into())));
        assert!(matches!(MailTransport::parse("smtp://localhost:2525"), Ok(MailTransport::Smtp(_))));
        assert!(matches!(MailTransport::parse("smtps://u:p@mail.example.org"), Ok(MailTransport::Smtp(_))));
        assert!(MailTransport::parse("smtp://localhost?tls=sometimes").is_err());
        assert!(MailTransport::parse("http://x").is_err());
        assert!(MailTransport::parse("file://").is_err());
    }

    #[test]
    fn payloads_round_trip_and_codes_are_in_subject_and_body() {
        let outgoing = Outgoing::SignupCode {
            to: "a@example.org".into(),
            partner: "Acme".into(),
            code: "48213".into(),
            valid_minutes: 10,
        };
        let json = serde_json::to_string(&outgoing).unwrap();
        assert!(json.contains(r#""template":"signup_code""#), "{json}");
        assert_eq!(serde_json::from_str::<Outgoing>(&json).unwrap(), outgoing);
        let (subject, body) = outgoing.render();
        assert!(subject.starts_with("48213 "));
        assert!(body.contains("48213") && body.contains("10 minutes"));
        let (_, body) = Outgoing::AccountExists { to: "a@example.org".into(), partner: "Acme".into() }.render();
        assert!(body.contains("already exists") && !body.chars().any(|c| c.is_ascii_digit()));
    }
}
