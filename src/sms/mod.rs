//! Outbound SMS (consent codes): a provider port, with Twilio's Messages API behind it
//! (shared/PROTOCOLS.md). Sandbox partners' codes are never sent (their code is fixed and
//! documented); live partners' go through the `sms.send` job, at least once.

mod twilio;

use std::sync::Arc;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::jobs::{JobOutcome, JobRegistry};
use crate::pii;
use crate::store::{ClaimedJob, Store};

/// The job kind that sends one text message.
pub const SMS_JOB: &str = "sms.send";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsSettings {
    /// Twilio's API (tests point it at a local server).
    pub twilio_api_base: String,
    /// `AC…`; empty: no SMS provider, live partners' codes go by e-mail only.
    pub twilio_account_sid: String,
    /// From `ONBOARD_SMS__TWILIO_AUTH_TOKEN`; never serialised or logged.
    #[serde(skip_serializing)]
    pub twilio_auth_token: Option<SecretString>,
    /// The sending number (E.164), or
    pub twilio_from: String,
    /// a Messaging Service (`MG…`) that picks one.
    pub twilio_messaging_service_sid: String,
    /// Per call.
    pub timeout_secs: u64,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            twilio_api_base: "https://api.twilio.com".into(),
            twilio_account_sid: String::new(),
            twilio_auth_token: None,
            twilio_from: String::new(),
            twilio_messaging_service_sid: String::new(),
            timeout_secs: 15,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("no SMS provider is configured")]
    NotConfigured,
    /// May pass later (a network error, 429, 5xx): the job retries.
    #[error("{0}")]
    Transient(String),
    /// Will not pass (an invalid number, a rejected sender): the job is dead-lettered.
    #[error("{0}")]
    Permanent(String),
}

/// The configured provider, if any; cheap to clone.
#[derive(Clone, Default)]
pub struct Sms {
    provider: Option<Arc<twilio::Twilio>>,
}

impl Sms {
    pub fn new(settings: &SmsSettings) -> Result<Self, String> {
        if settings.twilio_account_sid.is_empty() {
            return Ok(Self::default());
        }
        Ok(Self { provider: Some(Arc::new(twilio::Twilio::new(settings)?)) })
    }

    pub fn is_configured(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends `body` to `to` (E.164); returns the provider's message id.
    pub async fn send(&self, to: &str, body: &str) -> Result<String, SmsError> {
        self.provider.as_ref().ok_or(SmsError::NotConfigured)?.send(to, body).await
    }
}

/// The `sms.send` job's payload. The body holds a code, so the payload is cleared in the
/// transaction that completes the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextMessage {
    pub to: String,
    pub body: String,
    /// A code that is no longer valid is not sent (a retried job must not deliver it late).
    pub expires_at: Option<i64>,
}

/// Completes the job with its payload (and so the code) cleared, counting how it ended.
async fn finish(store: &Store, job: &ClaimedJob, result: &'static str) -> JobOutcome {
    metrics::counter!("sms_sent_total", "result" => result).increment(1);
    match store.complete_job_redacted(job, crate::domain::now_ms()).await {
        Ok(_) => JobOutcome::Committed,
        Err(e) => JobOutcome::Retry(e.to_string()),
    }
}

pub fn register(registry: &mut JobRegistry, store: &Store, sms: &Sms, concurrency: usize) {
    let (store, sms) = (store.clone(), sms.clone());
    registry.register(SMS_JOB, concurrency, move |job: ClaimedJob| {
        let (store, sms) = (store.clone(), sms.clone());
        async move {
            let message: TextMessage = match serde_json::from_str(&job.payload) {
                Ok(message) => message,
                Err(e) => return JobOutcome::Fail(format!("payload is not a text message: {e}")),
            };
            let now = crate::domain::now_ms();
            if message.expires_at.is_some_and(|at| at <= now) {
                tracing::warn!(to = %pii::MaskedPhone(&message.to), job = job.id, "sms not sent: its code expired first");
                return finish(&store, &job, "expired").await;
            }
            match sms.send(&message.to, &message.body).await {
                Ok(sid) => {
                    tracing::info!(to = %pii::MaskedPhone(&message.to), sid, job = job.id, "sms sent");
                    finish(&store, &job, "ok").await
                }
                Err(SmsError::Transient(e)) => {
                    metrics::counter!("sms_sent_total", "result" => "retry").increment(1);
                    JobOutcome::Retry(e)
                }
                // Not dead-lettered: a dead job would keep the code in its payload, and nobody
                // should resend it (the user asks for a new code). Logged and counted instead.
                Err(e) => {
                    tracing::warn!(to = %pii::MaskedPhone(&message.to), job = job.id, error = %e, "sms refused by the provider");
                    finish(&store, &job, "failed").await
                }
            }
        }
    });
}
