//! Stripe's API as used here (PROTOCOLS.md, "Stripe"): form-encoded POSTs with the secret key
//! as Bearer and an `Idempotency-Key` on each; customers; PaymentIntents confirmed at once
//! (`off_session` for renewals, `setup_future_usage=off_session` on the customer's own first
//! payment so renewals may charge the method); and the `Stripe-Signature` of inbound webhooks.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use super::{Canceled, ChargeOutcome, ChargeRequest, ProviderError};

pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    secret_key: SecretString,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: StripeError,
}

#[derive(Debug, Deserialize)]
struct StripeError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
    param: Option<String>,
    payment_intent: Option<IntentRef>,
}

#[derive(Debug, Deserialize)]
struct IntentRef {
    id: String,
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Intent {
    id: String,
    status: String,
    client_secret: Option<String>,
    last_payment_error: Option<StripeError>,
}

#[derive(Debug, Deserialize)]
struct Customer {
    id: String,
}

impl StripeClient {
    pub fn new(http: reqwest::Client, base: &str, secret_key: SecretString) -> Self {
        Self { http, base: base.trim_end_matches('/').to_owned(), secret_key }
    }

    async fn post(&self, path: &str, key: &str, form: &[(&str, String)]) -> Result<(u16, String), ProviderError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.secret_key.expose_secret())
            .header("Idempotency-Key", key)
            .form(form)
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(without_url(&e)))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| ProviderError::Unavailable(without_url(&e)))?;
        if status == 429 || status >= 500 {
            return Err(ProviderError::Unavailable(format!("HTTP {status}")));
        }
        Ok((status, body))
    }

    pub async fn create_customer(&self, user: &str) -> Result<String, ProviderError> {
        let key = format!("onboard-customer-{user}");
        let (status, body) =
            self.post("/v1/customers", &key, &[("metadata[onboard_user_id]", user.to_owned())]).await?;
        if status != 200 {
            return Err(ProviderError::Rejected(error_text(status, &body)));
        }
        let customer: Customer =
            serde_json::from_str(&body).map_err(|e| ProviderError::Unavailable(format!("unreadable customer: {e}")))?;
        Ok(customer.id)
    }

    /// `POST /v1/payment_intents/{id}/cancel`. Stripe refuses to cancel a succeeded one (400 with
    /// the PaymentIntent in the error): the money was taken.
    pub async fn cancel(&self, reference: &str, key: &str) -> Result<Canceled, ProviderError> {
        // Stripe's ids are letters, digits and underscores; anything else is not one of theirs.
        if reference.is_empty() || !reference.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ProviderError::Rejected(format!("{reference:?} is not a PaymentIntent id")));
        }
        let path = format!("/v1/payment_intents/{reference}/cancel");
        let (status, body) = self.post(&path, key, &[("cancellation_reason", "abandoned".to_owned())]).await?;
        if status == 200 {
            return Ok(Canceled::Canceled);
        }
        let error = serde_json::from_str::<ErrorBody>(&body).ok().map(|b| b.error);
        let status_of = error.as_ref().and_then(|e| e.payment_intent.as_ref()).and_then(|p| p.status.as_deref());
        match status_of {
            Some("succeeded") => Ok(Canceled::AlreadySucceeded),
            Some("canceled") => Ok(Canceled::Canceled),
            _ => Err(ProviderError::Rejected(error_text(status, &body))),
        }
    }

    pub async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, ProviderError> {
        let mut form = vec![
            ("amount", request.amount.minor().to_string()),
            // Stripe writes currencies in lower case.
            ("currency", request.amount.currency().code().to_ascii_lowercase()),
            ("customer", request.customer.clone()),
            ("payment_method", request.payment_method.clone()),
            ("payment_method_types[]", "card".to_owned()),
            ("confirm", "true".to_owned()),
            ("description", format!("Invoice {}", request.invoice)),
            ("metadata[onboard_invoice_id]", request.invoice.clone()),
        ];
        if request.off_session {
            form.push(("off_session", "true".to_owned()));
        } else {
            form.push(("setup_future_usage", "off_session".to_owned()));
        }
        let (status, body) = self.post("/v1/payment_intents", &request.idempotency_key, &form).await?;
        if status == 200 {
            let intent: Intent = serde_json::from_str(&body)
                .map_err(|e| ProviderError::Unavailable(format!("unreadable PaymentIntent: {e}")))?;
            return Ok(intent_outcome(intent));
        }
        let error = serde_json::from_str::<ErrorBody>(&body).ok().map(|b| b.error);
        // The same key with other parameters, or still in use by a concurrent request: what
        // the first request did is unknown here, so nothing may be concluded from this answer.
        if status == 409 || error.as_ref().is_some_and(|e| e.kind.as_deref() == Some("idempotency_error")) {
            return Err(ProviderError::Unavailable(error_text(status, &body)));
        }
        match error {
            // A card error (402), or a payment method Stripe does not know (400 on the
            // `payment_method` parameter): the payer's to fix, nothing charged.
            Some(e) if e.kind.as_deref() == Some("card_error") || e.param.as_deref() == Some("payment_method") => {
                Ok(declined(e))
            }
            _ => Err(ProviderError::Rejected(error_text(status, &body))),
        }
    }
}

fn intent_outcome(intent: Intent) -> ChargeOutcome {
    match intent.status.as_str() {
        "succeeded" => ChargeOutcome::Succeeded { reference: intent.id },
        "requires_payment_method" | "canceled" => {
            let mut outcome = declined(intent.last_payment_error.unwrap_or(StripeError {
                kind: None,
                code: Some("payment_failed".into()),
                decline_code: None,
                message: Some(format!("The payment ended {}.", intent.status)),
                param: None,
                payment_intent: None,
            }));
            if let ChargeOutcome::Declined { reference, .. } = &mut outcome {
                *reference = Some(intent.id);
            }
            outcome
        }
        _ => {
            ChargeOutcome::Pending { reference: intent.id, status: intent.status, client_secret: intent.client_secret }
        }
    }
}

fn declined(e: StripeError) -> ChargeOutcome {
    ChargeOutcome::Declined {
        reference: e.payment_intent.map(|p| p.id),
        code: e.code.unwrap_or_else(|| "card_declined".into()),
        decline_code: e.decline_code,
        message: e.message.unwrap_or_else(|| "The card was declined.".into()),
    }
}

/// Stripe's error message (never the request: it carries no secret, but the key is in headers).
fn error_text(status: u16, body: &str) -> String {
    let message = serde_json::from_str::<ErrorBody>(body).ok().and_then(|b| b.error.message);
    format!("HTTP {status}: {}", message.unwrap_or_else(|| "no error message".into()))
}

/// A transport error's text without the URL (the operator's, not a secret, but noise in logs).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<stripe>");
    }
    if e.is_timeout() { format!("timed out ({text})") } else { text }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    #[error("the Stripe-Signature timestamp is outside the tolerance")]
    Stale,
    #[error("no Stripe-Signature v1 signature matches the body")]
    Mismatch,
}

fn expected(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]` against the raw body: any `v1` that is
/// the HMAC-SHA256 of `"{t}.{body}"` under `secret` (compared in constant time), with `t`
/// within `tolerance_secs` of `now_secs`.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secret: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    let at: i64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_secs - at).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    let mac = expected(secret, timestamp, body);
    let matches = signatures.iter().any(|s| mac.clone().verify_slice(s).is_ok());
    if matches { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// A `Stripe-Signature` header for `body` at `timestamp` (the test servers' and the sandbox's).
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    format!("t={t},v1={}", hex::encode(expected(secret, &t, body).finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_stripes() {
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
        let header = signature_header("whsec_test", 1_700_000_000, body);
        assert_eq!(verify_signature(&header, body, "whsec_test", 1_700_000_100, 300), Ok(()));
        assert_eq!(verify_signature(&header, body, "whsec_other", 1_700_000_100, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature(&header, b"{}", "whsec_test", 1_700_000_100, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature(&header, body, "whsec_test", 1_700_000_400, 300), Err(SignatureError::Stale));
        assert_eq!(verify_signature("v1=abcd", body, "whsec_test", 0, 300), Err(SignatureError::Malformed));
        // Several signatures (a secret being rolled): any one matching is enough.
        let both = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(verify_signature(&both, body, "whsec_test", 1_700_000_000, 300), Ok(()));
        // An independent computation of the same HMAC.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
        mac.update(b"1700000000.");
        mac.update(body);
        assert!(header.ends_with(&hex::encode(mac.finalize().into_bytes())));
    }
}
