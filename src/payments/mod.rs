//! The payment provider port: a customer per user, and one charge of an invoice's amount to a
//! payment method the partner's app tokenised with the provider's SDK (card data never reaches
//! Onboard). Two adapters behind it: Stripe's API (`stripe.rs`) and the sandbox, which answers
//! Stripe's documented test PaymentMethod ids without any network, through the same code path.

pub mod stripe;

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::domain::money::Money;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentSettings {
    /// Stripe's API (tests point it at a local server).
    pub stripe_api_base: String,
    /// Timeout of each provider call.
    pub timeout_secs: u64,
    /// How long a payer holds an invoice's charge attempt before another may finish it: more
    /// than two provider calls' `timeout_secs` (the customer, then the charge).
    pub charge_lease_secs: u64,
    /// How often this node looks for subscriptions whose period ended (renewals, trials ending,
    /// retries of failed renewals).
    pub renewal_sweep_secs: u64,
    /// Stripe webhooks older than this (by their signed timestamp) are refused.
    pub webhook_tolerance_secs: u64,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            stripe_api_base: "https://api.stripe.com".into(),
            timeout_secs: 30,
            charge_lease_secs: 120,
            renewal_sweep_secs: 60,
            webhook_tolerance_secs: 300,
        }
    }
}

/// What a charge needs: the amount, whose it is, with what, and the idempotency key that makes
/// a retried call one charge at the provider.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub amount: Money,
    pub customer: String,
    pub payment_method: String,
    /// A merchant-initiated charge (a renewal): the customer is not there to authenticate.
    pub off_session: bool,
    pub idempotency_key: String,
    /// The invoice, for the provider's metadata and the statement.
    pub invoice: String,
}

/// How a charge ended at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded {
        reference: String,
    },
    /// The card or the bank said no; nothing was charged.
    Declined {
        reference: Option<String>,
        code: String,
        decline_code: Option<String>,
        message: String,
    },
    /// Waiting on the customer (3-D Secure: `client_secret` lets the SDK finish) or the bank;
    /// the provider's webhook settles it.
    Pending {
        reference: String,
        status: String,
        client_secret: Option<String>,
    },
}

/// How canceling a waiting payment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Canceled {
    Canceled,
    /// Too late: the customer finished it and the money was taken.
    AlreadySucceeded,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// No answer, or a 5xx/429: the outcome is unknown; the same idempotency key finds it.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request itself (a bad key, a bad parameter): nothing charged.
    #[error("the payment provider refused the request: {0}")]
    Rejected(String),
}

/// One partner's provider, with its opened secret.
pub enum Provider {
    Sandbox,
    Stripe(stripe::StripeClient),
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Sandbox => "sandbox",
            Provider::Stripe(_) => "stripe",
        }
    }

    /// A Stripe client for `secret_key` against `settings.stripe_api_base`.
    pub fn stripe(http: reqwest::Client, settings: &PaymentSettings, secret_key: SecretString) -> Self {
        Provider::Stripe(stripe::StripeClient::new(http, &settings.stripe_api_base, secret_key))
    }

    /// The user's customer at the provider, created once (the key makes a retry the same one).
    pub async fn create_customer(&self, user: &str) -> Result<String, ProviderError> {
        match self {
            Provider::Sandbox => Ok(format!("cus_sandbox_{}", user.trim_start_matches("usr:").replace('-', ""))),
            Provider::Stripe(client) => client.create_customer(user).await,
        }
    }

    /// Cancels a payment still waiting on the customer (3-D Secure), so another can replace it.
    pub async fn cancel(&self, reference: &str, idempotency_key: &str) -> Result<Canceled, ProviderError> {
        match self {
            Provider::Sandbox => Ok(Canceled::Canceled),
            Provider::Stripe(client) => client.cancel(reference, idempotency_key).await,
        }
    }

    pub async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, ProviderError> {
        match self {
            Provider::Sandbox => Ok(sandbox_charge(request)),
            Provider::Stripe(client) => client.charge(request).await,
        }
    }
}

/// The sandbox's answers, by Stripe's test PaymentMethod ids (docs.stripe.com/testing): the
/// same ids give the same outcomes against Stripe's test mode.
pub fn sandbox_charge(request: &ChargeRequest) -> ChargeOutcome {
    let reference = format!("pi_sandbox_{}", crate::auth::credentials::random_hex(12));
    let declined = |code: &str, decline: Option<&str>, message: &str| ChargeOutcome::Declined {
        reference: Some(reference.clone()),
        code: code.into(),
        decline_code: decline.map(Into::into),
        message: message.into(),
    };
    match request.payment_method.as_str() {
        "pm_card_visa" | "pm_card_visa_debit" | "pm_card_mastercard" | "pm_card_amex" | "pm_card_discover"
        | "pm_card_mx" => ChargeOutcome::Succeeded { reference },
        "pm_card_chargeDeclined" => declined("card_declined", Some("generic_decline"), "Your card was declined."),
        "pm_card_chargeDeclinedInsufficientFunds" => {
            declined("card_declined", Some("insufficient_funds"), "Your card has insufficient funds.")
        }
        "pm_card_chargeDeclinedExpiredCard" => declined("expired_card", None, "Your card has expired."),
        "pm_card_chargeDeclinedIncorrectCvc" => {
            declined("incorrect_cvc", None, "Your card's security code is incorrect.")
        }
        "pm_card_chargeCustomerFail" if request.off_session => {
            declined("card_declined", Some("generic_decline"), "Your card was declined.")
        }
        "pm_card_chargeCustomerFail" => ChargeOutcome::Succeeded { reference },
        "pm_card_authenticationRequired" if request.off_session => declined(
            "authentication_required",
            Some("authentication_required"),
            "This payment requires authentication.",
        ),
        "pm_card_authenticationRequired" => ChargeOutcome::Pending {
            client_secret: Some(format!("{reference}_secret_sandbox")),
            reference,
            status: "requires_action".into(),
        },
        _ => declined(
            "resource_missing",
            None,
            "No such PaymentMethod; the sandbox knows Stripe's test ids (pm_card_visa, …).",
        ),
    }
}

/// This node's access to partners' payment providers: the HTTP client, the settings, and the
/// key that opens their secrets.
#[derive(Clone)]
pub struct Payments {
    pub http: reqwest::Client,
    pub settings: PaymentSettings,
    pub kek: std::sync::Arc<crate::kek::Kek>,
}

impl Payments {
    pub fn new(settings: PaymentSettings, kek: std::sync::Arc<crate::kek::Kek>) -> reqwest::Result<Self> {
        Ok(Self { http: http_client(&settings)?, settings, kek })
    }

    /// How long a payer holds an invoice's charge attempt, in milliseconds.
    pub fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.charge_lease_secs).unwrap_or(i64::MAX / 2_000).saturating_mul(1000)
    }
}

/// The HTTP client provider calls go through (rustls, the configured timeout, no redirects).
pub fn http_client(settings: &PaymentSettings) -> reqwest::Result<reqwest::Client> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(settings.timeout_secs))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Currency;

    fn request(method: &str, off_session: bool) -> ChargeRequest {
        ChargeRequest {
            amount: Money::new(999, Currency::parse("USD").unwrap()).unwrap(),
            customer: "cus_x".into(),
            payment_method: method.into(),
            off_session,
            idempotency_key: "k".into(),
            invoice: "inv:x".into(),
        }
    }

    #[test]
    fn the_sandbox_answers_stripes_test_methods() {
        assert!(matches!(sandbox_charge(&request("pm_card_visa", false)), ChargeOutcome::Succeeded { .. }));
        let ChargeOutcome::Declined { decline_code, .. } =
            sandbox_charge(&request("pm_card_chargeDeclinedInsufficientFunds", false))
        else {
            panic!("declined expected")
        };
        assert_eq!(decline_code.as_deref(), Some("insufficient_funds"));
        assert!(matches!(
            sandbox_charge(&request("pm_card_chargeCustomerFail", false)),
            ChargeOutcome::Succeeded { .. }
        ));
        assert!(matches!(sandbox_charge(&request("pm_card_chargeCustomerFail", true)), ChargeOutcome::Declined { .. }));
        assert!(matches!(
            sandbox_charge(&request("pm_card_authenticationRequired", false)),
            ChargeOutcome::Pending { .. }
        ));
        assert!(matches!(sandbox_charge(&request("pm_nope", false)), ChargeOutcome::Declined { .. }));
    }
}
