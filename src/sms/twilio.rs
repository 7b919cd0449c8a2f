//! Twilio's Messages API: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form fields
//! `To`, `From` or `MessagingServiceSid`, `Body`, HTTP Basic `AccountSid:AuthToken`; the answer
//! is JSON with `sid`, errors carry a numeric `code` and a `message`.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{SmsError, SmsSettings};

pub struct Twilio {
    http: reqwest::Client,
    url: String,
    account_sid: String,
    auth_token: SecretString,
    sender: (&'static str, String),
}

#[derive(serde::Deserialize)]
struct Sent {
    sid: String,
}

#[derive(serde::Deserialize)]
struct Refused {
    code: Option<i64>,
    message: Option<String>,
}

impl Twilio {
    pub fn new(settings: &SmsSettings) -> Result<Self, String> {
        let auth_token = settings
            .twilio_auth_token
            .clone()
            .filter(|t| !t.expose_secret().is_empty())
            .ok_or("sms.twilio_auth_token is required with sms.twilio_account_sid")?;
        let sender = match (settings.twilio_from.is_empty(), settings.twilio_messaging_service_sid.is_empty()) {
            (false, true) => ("From", settings.twilio_from.clone()),
            (true, false) => ("MessagingServiceSid", settings.twilio_messaging_service_sid.clone()),
            _ => return Err("set one of sms.twilio_from and sms.twilio_messaging_service_sid".into()),
        };
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("onboard/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let base = settings.twilio_api_base.trim_end_matches('/');
        let url = format!("{base}/2010-04-01/Accounts/{}/Messages.json", settings.twilio_account_sid);
        Ok(Self { http, url, account_sid: settings.twilio_account_sid.clone(), auth_token, sender })
    }

    pub async fn send(&self, to: &str, body: &str) -> Result<String, SmsError> {
        let form = [("To", to), (self.sender.0, self.sender.1.as_str()), ("Body", body)];
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&form)
            .send()
            .await
            .map_err(|e| SmsError::Transient(format!("twilio: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            let sent: Sent =
                response.json().await.map_err(|e| SmsError::Transient(format!("twilio answer unreadable: {e}")))?;
            return Ok(sent.sid);
        }
        let refused: Option<Refused> = response.json().await.ok();
        let why = refused.map_or_else(String::new, |r| {
            format!(" (code {}: {})", r.code.unwrap_or_default(), r.message.unwrap_or_default())
        });
        // Twilio's messages may quote the number; logs and job errors get it masked.
        let why = why.replace(to, &crate::pii::MaskedPhone(to).to_string());
        let message = format!("twilio answered {status}{why}");
        // 429 and 5xx may pass later; other 4xx (bad number, bad sender, bad credentials) will not.
        if status.as_u16() == 429 || status.is_server_error() {
            Err(SmsError::Transient(message))
        } else {
            Err(SmsError::Permanent(message))
        }
    }
}
