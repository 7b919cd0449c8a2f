//! Seed 003 step 4: accounts, subscription tiers, subscriptions, invoices and their payment.
//! Each use case is one write, except paying, which is three around the provider's call (no
//! write waits on the network): claim the invoice's charge attempt (the database decides
//! between racing payers), charge with an idempotency key derived from the invoice and the
//! attempt, record the outcome in the append-only ledger with its effects (`pay.rs`).

mod pay;

pub use pay::{
    INCOMPLETE_EXPIRES_MS, IntentEvent, Paid, Payer, RenewalReport, apply_intent_event, pay_invoice, renew_due,
};

use serde::Serialize;
use serde_json::json;

use super::audit::{self, Action};
use crate::domain::billing::{
    AccountId, Interval, InvoiceId, InvoiceStatus, LedgerKind, PaymentId, PlanId, SubscriptionId, SubscriptionStatus,
    period_end,
};
use crate::domain::cip::CipState;
use crate::domain::money::{Currency, Money};
use crate::domain::webhook::EventType;
use crate::domain::{Partner, PartnerId, PublicUserId, rfc3339};
use crate::kek::{Kek, KekError};
use crate::payments::{Canceled, ChargeOutcome, ChargeRequest, Provider, ProviderError};
use crate::store::billing::{
    self as repo, AccountRecord, CustomerRecord, InvoiceRecord, LedgerRecord, NewAccount, NewInvoice, NewLedgerEntry,
    NewPlan, NewSubscription, PartnerPaymentsRecord, PlanRecord, SubscriptionRecord,
};
use crate::store::{ProspectRecord, Store, StoreError, StoreResult, Tx, Whose, boxed, prospects, webhooks};

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("the user's onboarding is {0}, not Completed")]
    NotCompleted(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("this partner has no payment provider configured")]
    NotConfigured,
    #[error("another payment of this invoice is in progress")]
    InFlight,
    /// A provider event seen before (internal: its write is rolled back).
    #[error("the event was applied before")]
    Duplicate,
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("a stored secret cannot be opened")]
    Sealed(#[from] KekError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("stored {what} is invalid"))
}

/// An account as its owner sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// `acc:<uuid>`
    pub account_id: String,
    /// `open` or `closed`.
    pub status: String,
    /// The account opened when onboarding completed.
    pub primary: bool,
    pub created_at: String,
}

impl From<&AccountRecord> for Account {
    fn from(r: &AccountRecord) -> Self {
        Self {
            account_id: r.public_id.clone(),
            status: r.status.clone(),
            primary: r.is_primary,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// A subscription tier (`subscriptionDetailsId`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tier {
    /// `plan:<uuid>`
    pub subscription_details_id: String,
    pub name: String,
    pub description: Option<String>,
    /// The price per interval in minor units of `currency` (999 USD = $9.99).
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// The same price in major units, with the currency's decimals (`"9.99"`), for display.
    pub amount_decimal: String,
    pub interval: Interval,
    pub trial_days: i64,
    /// Set when the tier is no longer offered (its subscriptions go on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
}

impl Tier {
    pub fn of(r: &PlanRecord) -> StoreResult<Self> {
        let price = money(r.amount_minor, &r.currency)?;
        Ok(Self {
            subscription_details_id: r.public_id.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
            amount: r.amount_minor,
            currency: r.currency.clone(),
            amount_decimal: price.major(),
            interval: Interval::parse(&r.interval).ok_or_else(|| corrupt("interval"))?,
            trial_days: r.trial_days,
            archived_at: r.archived_at.map(rfc3339),
        })
    }
}

fn money(minor: i64, currency: &str) -> StoreResult<Money> {
    let currency = Currency::parse(currency).map_err(|_| corrupt("currency"))?;
    Money::new(minor, currency).map_err(|_| corrupt("amount"))
}

/// A subscription as its owner sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// `sub:<uuid>`
    pub subscription_id: String,
    pub account_id: String,
    pub subscription_details_id: String,
    pub status: SubscriptionStatus,
    pub current_period_start: String,
    pub current_period_end: String,
    /// It ends when the current period does.
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<String>,
    /// The current period's invoice (none during a trial).
    pub invoice_id: Option<String>,
    pub created_at: String,
}

impl Subscription {
    fn of(r: &SubscriptionRecord, invoice: Option<&InvoiceRecord>) -> StoreResult<Self> {
        Ok(Self {
            subscription_id: r.public_id.clone(),
            account_id: r.account_public_id.clone(),
            subscription_details_id: r.plan_public_id.clone(),
            status: SubscriptionStatus::parse(&r.status).ok_or_else(|| corrupt("subscription status"))?,
            current_period_start: rfc3339(r.period_start),
            current_period_end: rfc3339(r.period_end),
            cancel_at_period_end: r.cancel_at_period_end,
            canceled_at: r.canceled_at.map(rfc3339),
            invoice_id: invoice.map(|i| i.public_id.clone()),
            created_at: rfc3339(r.created_at),
        })
    }
}

/// One ledger entry, as a payment of an invoice.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// `pay:<uuid>`
    pub payment_id: String,
    /// `succeeded` (a charge), `failed` (declined: nothing charged) or `refunded`.
    pub status: &'static str,
    pub amount: i64,
    pub currency: String,
    pub payment_method_id: Option<String>,
    /// `stripe` or `sandbox`.
    pub provider: String,
    /// The provider's payment (a PaymentIntent id).
    pub provider_reference: Option<String>,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
    pub failure_message: Option<String>,
    /// A renewal charged without the customer present.
    pub off_session: bool,
    pub created_at: String,
}

impl Payment {
    fn of(r: &LedgerRecord) -> StoreResult<Self> {
        let status = match LedgerKind::parse(&r.kind).ok_or_else(|| corrupt("ledger kind"))? {
            LedgerKind::Charge => "succeeded",
            LedgerKind::Failure => "failed",
            LedgerKind::Refund => "refunded",
            LedgerKind::Unapplied => "unapplied",
        };
        Ok(Self {
            payment_id: r.public_id.clone(),
            status,
            amount: r.amount_minor,
            currency: r.currency.clone(),
            payment_method_id: r.payment_method.clone(),
            provider: r.provider.clone(),
            provider_reference: r.provider_ref.clone(),
            failure_code: r.failure_code.clone(),
            decline_code: r.decline_code.clone(),
            failure_message: r.failure_message.clone(),
            off_session: r.off_session,
            created_at: rfc3339(r.created_at),
        })
    }
}

/// An invoice with its payments (the ledger entries it has).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    /// `inv:<uuid>`
    pub invoice_id: String,
    pub subscription_id: String,
    pub status: InvoiceStatus,
    /// Minor units of `currency`.
    pub amount_due: i64,
    /// The sum of its charges less refunds, from the ledger.
    pub amount_paid: i64,
    pub amount_remaining: i64,
    pub currency: String,
    pub period_start: String,
    pub period_end: String,
    /// Charge attempts made.
    pub attempts: i64,
    /// A charge attempt is under way (waiting on the provider, the customer or the bank).
    pub payment_pending: bool,
    pub created_at: String,
    pub paid_at: Option<String>,
    pub payments: Vec<Payment>,
}

impl Invoice {
    fn of(r: &InvoiceRecord, ledger: &[LedgerRecord]) -> StoreResult<Self> {
        Ok(Self {
            invoice_id: r.public_id.clone(),
            subscription_id: r.subscription_public_id.clone(),
            status: InvoiceStatus::parse(&r.status).ok_or_else(|| corrupt("invoice status"))?,
            amount_due: r.amount_due,
            amount_paid: r.amount_paid,
            amount_remaining: (r.amount_due - r.amount_paid).max(0),
            currency: r.currency.clone(),
            period_start: rfc3339(r.period_start),
            period_end: rfc3339(r.period_end),
            attempts: r.attempts,
            payment_pending: r.charging_attempt.is_some(),
            created_at: rfc3339(r.created_at),
            paid_at: r.paid_at.map(rfc3339),
            payments: ledger.iter().map(Payment::of).collect::<StoreResult<_>>()?,
        })
    }
}

async fn invoice_view(tx: &mut Tx<'_>, record: &InvoiceRecord) -> StoreResult<Invoice> {
    let ledger = repo::ledger_of_in(tx, record.id).await?;
    Invoice::of(record, &ledger)
}

/// A user's id and CIP state, locked for the write; `NotFound` when the partner has no such user.
async fn locked_user(tx: &mut Tx<'_>, partner: PartnerId, user: &PublicUserId) -> Result<ProspectRecord, BillingError> {
    let whose = Whose::Public { user: user.as_str(), partner };
    prospects::lock(tx, whose).await?.ok_or(BillingError::NotFound("user"))
}

async fn user_id(store: &Store, partner: PartnerId, user: &PublicUserId) -> Result<i64, BillingError> {
    store.user_row_id(partner, user.as_str()).await?.ok_or(BillingError::NotFound("user"))
}

async fn emit(
    tx: &mut Tx<'_>,
    partner: i64,
    kind: EventType,
    user: i64,
    data: serde_json::Value,
    now: i64,
) -> StoreResult<String> {
    webhooks::emit(tx, partner, kind.as_str(), Some(user), None, &data, now).await
}

// ---------------------------------------------------------------------------------------------
// Accounts

/// Opens the user's primary account (CIP provisioning, in its write); the existing one when it
/// was opened before (a customer provisioned again after a compliance review keeps it).
pub(super) async fn open_primary_account(
    tx: &mut Tx<'_>,
    user: &ProspectRecord,
    now: i64,
) -> StoreResult<AccountRecord> {
    if let Some(existing) = repo::primary_account_in(tx, user.partner_id, user.id).await? {
        return Ok(existing);
    }
    let id = AccountId::generate();
    let new = NewAccount {
        public_id: id.as_str(),
        partner_id: user.partner_id,
        user_id: user.id,
        is_primary: true,
        opened_by: "cip:provisioning",
    };
    let account = repo::insert_account(tx, &new, now).await?;
    let data = json!({"userId": user.public_id, "accountId": account.public_id, "primary": true});
    emit(tx, user.partner_id, EventType::AccountOpened, user.id, data, now).await?;
    Ok(account)
}

/// `POST /accounts`: another account for a user whose onboarding is `Completed`.
pub async fn open_account(
    store: &Store,
    partner: PartnerId,
    user: &PublicUserId,
    now: i64,
) -> Result<Account, BillingError> {
    let user = user.clone();
    store
        .write(move |mut tx| {
            boxed(async move {
                let record = locked_user(&mut tx, partner, &user).await?;
                let state = record.cip_state()?;
                if state != Some(CipState::COMPLETED) {
                    return Err(BillingError::NotCompleted(state.map_or("not started".into(), |s| s.to_string())));
                }
                let id = AccountId::generate();
                let actor = format!("user:{user}");
                let new = NewAccount {
                    public_id: id.as_str(),
                    partner_id: record.partner_id,
                    user_id: record.id,
                    is_primary: false,
                    opened_by: &actor,
                };
                let account = repo::insert_account(&mut tx, &new, now).await?;
                let data = json!({"userId": record.public_id, "accountId": account.public_id, "primary": false});
                emit(&mut tx, record.partner_id, EventType::AccountOpened, record.id, data, now).await?;
                Ok(Account::from(&account))
            })
        })
        .await
}

pub async fn accounts(store: &Store, partner: PartnerId, user: &PublicUserId) -> Result<Vec<Account>, BillingError> {
    let id = user_id(store, partner, user).await?;
    Ok(store.accounts_of(partner, id).await?.iter().map(Account::from).collect())
}

pub async fn account(
    store: &Store,
    partner: PartnerId,
    user: &PublicUserId,
    account: &str,
) -> Result<Account, BillingError> {
    let id = user_id(store, partner, user).await?;
    let record = store.account_of(partner, id, account).await?.ok_or(BillingError::NotFound("account"))?;
    Ok(Account::from(&record))
}

// ---------------------------------------------------------------------------------------------
// Tiers

/// A new tier, as an operator (CLI or admin route) defines it.
pub struct NewTier {
    pub name: String,
    pub description: Option<String>,
    pub price: Money,
    pub interval: Interval,
    pub trial_days: u32,
}

pub async fn create_tier(
    store: &Store,
    partner: PartnerId,
    tier: NewTier,
    actor: &str,
    now: i64,
) -> Result<Tier, BillingError> {
    let name = crate::domain::clean_text(&tier.name, 200, true)
        .map_err(|e| BillingError::Invalid(format!("`name` {e}")))?
        .to_owned();
    let description = match tier.description.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => Some(
            crate::domain::clean_text(d, 1000, true)
                .map_err(|e| BillingError::Invalid(format!("`description` {e}")))?
                .to_owned(),
        ),
        None => None,
    };
    if tier.trial_days > 730 {
        return Err(BillingError::Invalid("`trialDays` must be at most 730".into()));
    }
    let actor = actor.to_owned();
    store
        .write(move |mut tx| {
            boxed(async move {
                if !crate::store::partners::exists(&mut tx, partner).await? {
                    return Err(BillingError::NotFound("partner"));
                }
                let id = PlanId::generate();
                let new = NewPlan {
                    public_id: id.as_str(),
                    partner_id: partner.get(),
                    name: &name,
                    description: description.as_deref(),
                    amount_minor: tier.price.minor(),
                    currency: tier.price.currency().code(),
                    interval: tier.interval.as_str(),
                    trial_days: i64::from(tier.trial_days),
                };
                let record = repo::insert_plan(&mut tx, &new, now).await?;
                let detail = json!({"partnerId": partner.get(), "name": record.name, "amount": record.amount_minor,
                                    "currency": record.currency, "interval": record.interval, "trialDays": record.trial_days});
                audit::record(&mut tx, &actor, Action::PlanCreate, Some(&record.public_id), detail, now).await?;
                Ok(Tier::of(&record)?)
            })
        })
        .await
}

pub async fn archive_tier(
    store: &Store,
    partner: PartnerId,
    id: &str,
    actor: &str,
    now: i64,
) -> Result<Tier, BillingError> {
    let (id, actor) = (id.to_owned(), actor.to_owned());
    store
        .write(move |mut tx| {
            boxed(async move {
                let mut record = repo::plan_in(&mut tx, partner.get(), &id)
                    .await?
                    .ok_or(BillingError::NotFound("subscription tier"))?;
                if repo::archive_plan(&mut tx, record.id, now).await? {
                    record.archived_at = Some(now);
                    let detail = json!({"partnerId": partner.get()});
                    audit::record(&mut tx, &actor, Action::PlanArchive, Some(&record.public_id), detail, now).await?;
                }
                Ok(Tier::of(&record)?)
            })
        })
        .await
}

pub async fn tiers(store: &Store, partner: PartnerId, archived: bool) -> Result<Vec<Tier>, BillingError> {
    Ok(store.plans(partner, archived).await?.iter().map(Tier::of).collect::<StoreResult<_>>()?)
}

// ---------------------------------------------------------------------------------------------
// Payment settings

/// A partner's payment provider: `stripe` with its secret key and webhook signing secret, or
/// the built-in `sandbox` (sandbox partners only).
pub struct PaymentsConfig {
    pub provider: &'static str,
    pub secret_key: Option<secrecy::SecretString>,
    pub webhook_secret: Option<secrecy::SecretString>,
}

pub fn secret_aad(column: &str, partner: i64) -> String {
    format!("partner_payments.{column}:{partner}")
}

pub async fn configure_payments(
    store: &Store,
    kek: &Kek,
    partner: &Partner,
    config: PaymentsConfig,
    actor: &str,
    now: i64,
) -> Result<(), BillingError> {
    use secrecy::ExposeSecret;
    let live = partner.environment == crate::domain::Environment::Live;
    if live && config.provider == "sandbox" {
        return Err(BillingError::Invalid("a live partner cannot use the sandbox payment provider".into()));
    }
    if live && !kek.is_configured() {
        return Err(BillingError::Invalid("live provider secrets need a key-encryption key (secrets.kek)".into()));
    }
    if config.provider == "stripe" {
        let key = config.secret_key.as_ref().map(|k| k.expose_secret().to_owned()).unwrap_or_default();
        if !(key.starts_with("sk_") || key.starts_with("rk_")) || key.len() < 16 {
            return Err(BillingError::Invalid("`secretKey` must be a Stripe secret key (sk_… or rk_…)".into()));
        }
        if live && key.starts_with("sk_test_") {
            return Err(BillingError::Invalid("a live partner needs a live Stripe key, not sk_test_…".into()));
        }
        let hook = config.webhook_secret.as_ref().map(|k| k.expose_secret().to_owned()).unwrap_or_default();
        if !hook.starts_with("whsec_") || hook.len() < 16 {
            return Err(BillingError::Invalid("`webhookSecret` must be a Stripe endpoint secret (whsec_…)".into()));
        }
    }
    let id = partner.id.get();
    let seal = |column: &str, secret: &Option<secrecy::SecretString>| {
        secret.as_ref().map(|s| kek.seal(&secret_aad(column, id), s.expose_secret().as_bytes()))
    };
    let record = PartnerPaymentsRecord {
        partner_id: id,
        provider: config.provider.to_owned(),
        secret_key: seal("secret_key", &config.secret_key),
        webhook_secret: seal("webhook_secret", &config.webhook_secret),
        updated_at: now,
    };
    let actor = actor.to_owned();
    store
        .write(move |mut tx| {
            boxed(async move {
                repo::upsert_partner_payments(&mut tx, &record).await?;
                let detail = json!({"provider": record.provider, "secretsChanged": record.secret_key.is_some()});
                audit::record(&mut tx, &actor, Action::PartnerPaymentsConfigure, Some(&id.to_string()), detail, now)
                    .await?;
                Ok(())
            })
        })
        .await
}

/// The partner's provider with its secret opened: its settings, or the sandbox for a sandbox
/// partner without any. `NotConfigured` for a live partner without settings.
pub async fn provider_of(
    store: &Store,
    payments: &crate::payments::Payments,
    partner: &Partner,
) -> Result<Provider, BillingError> {
    let Some(record) = store.partner_payments(partner.id).await? else {
        return match partner.environment {
            crate::domain::Environment::Sandbox => Ok(Provider::Sandbox),
            crate::domain::Environment::Live => Err(BillingError::NotConfigured),
        };
    };
    match (record.provider.as_str(), record.secret_key) {
        ("sandbox", _) => Ok(Provider::Sandbox),
        ("stripe", Some(sealed)) => {
            let key = payments.kek.open_string(&secret_aad("secret_key", record.partner_id), &sealed)?;
            Ok(Provider::stripe(payments.http.clone(), &payments.settings, key))
        }
        _ => Err(BillingError::NotConfigured),
    }
}

/// The partner's Stripe webhook secret, opened.
pub async fn stripe_webhook_secret(
    store: &Store,
    kek: &Kek,
    partner: PartnerId,
) -> Result<Option<secrecy::SecretString>, BillingError> {
    let Some(record) = store.partner_payments(partner).await? else { return Ok(None) };
    match record.webhook_secret {
        Some(sealed) => Ok(Some(kek.open_string(&secret_aad("webhook_secret", record.partner_id), &sealed)?)),
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

/// `POST /subscriptions`: the account (the caller's) subscribes to the tier. Without a trial
/// the first period's invoice is created `open` and the subscription is `incomplete` until it
/// is paid; with one, it is `trialing` and the first invoice comes when the trial ends.
pub async fn start_subscription(
    store: &Store,
    partner: PartnerId,
    user: &PublicUserId,
    account: &str,
    tier: &str,
    now: i64,
) -> Result<Subscription, BillingError> {
    let (user, account, tier) = (user.clone(), account.to_owned(), tier.to_owned());
    store
        .write(move |mut tx| {
            boxed(async move {
                let owner = locked_user(&mut tx, partner, &user).await?;
                let account = repo::account_in(&mut tx, partner.get(), owner.id, &account)
                    .await?
                    .ok_or(BillingError::NotFound("account"))?;
                if account.status != "open" {
                    return Err(BillingError::Conflict("The account is closed.".into()));
                }
                let plan = repo::plan_in(&mut tx, partner.get(), &tier)
                    .await?
                    .ok_or(BillingError::NotFound("subscription tier"))?;
                if plan.archived_at.is_some() {
                    return Err(BillingError::Conflict("This subscription tier is no longer offered.".into()));
                }
                let interval = Interval::parse(&plan.interval).ok_or_else(|| corrupt("interval"))?;
                let trial = plan.trial_days > 0;
                let (status, period, end) = if trial {
                    (SubscriptionStatus::Trialing, 0, crate::domain::billing::days_after(now, plan.trial_days as u32))
                } else {
                    let end = period_end(now, interval, 1).ok_or_else(|| corrupt("period"))?;
                    // A free tier has nothing to pay: its (paid, empty) invoice starts it at once.
                    let status = if plan.amount_minor == 0 {
                        SubscriptionStatus::Active
                    } else {
                        SubscriptionStatus::Incomplete
                    };
                    (status, 1, end)
                };
                let id = SubscriptionId::generate();
                let new = NewSubscription {
                    public_id: id.as_str(),
                    partner_id: partner.get(),
                    user_id: owner.id,
                    account_id: account.id,
                    plan_id: plan.id,
                    status: status.as_str(),
                    // Periods after a trial count from its end.
                    anchor_at: if trial { end } else { now },
                    period,
                    period_start: now,
                    period_end: end,
                };
                let row = match repo::insert_subscription(&mut tx, &new, now).await {
                    Err(StoreError::Conflict(_)) => {
                        return Err(BillingError::Conflict(
                            "The account already has a live subscription to this tier.".into(),
                        ));
                    }
                    other => other?,
                };
                let record = repo::lock_subscription(&mut tx, row).await?.ok_or_else(|| corrupt("subscription"))?;
                let invoice = if trial { None } else { Some(open_invoice(&mut tx, &record, now).await?) };
                status_event(&mut tx, &record, None, now).await?;
                Ok(Subscription::of(&record, invoice.as_ref())?)
            })
        })
        .await
}

/// The invoice of the subscription's current period, created unless it exists; a free tier's
/// is paid at once.
async fn open_invoice(tx: &mut Tx<'_>, s: &SubscriptionRecord, now: i64) -> StoreResult<InvoiceRecord> {
    let id = InvoiceId::generate();
    let new = NewInvoice {
        public_id: id.as_str(),
        partner_id: s.partner_id,
        user_id: s.user_id,
        subscription_id: s.id,
        period: s.period,
        period_start: s.period_start,
        period_end: s.period_end,
        amount_due: s.amount_minor,
        currency: &s.currency,
    };
    let row = repo::ensure_invoice(tx, &new, now).await?;
    if s.amount_minor == 0 {
        repo::mark_free_invoice_paid(tx, row, now).await?;
    }
    repo::invoice_in(tx, row).await?.ok_or_else(|| corrupt("invoice"))
}

async fn status_event(tx: &mut Tx<'_>, s: &SubscriptionRecord, from: Option<&str>, now: i64) -> StoreResult<()> {
    let data = json!({"userId": user_public_id(tx, s.user_id).await?, "subscriptionId": s.public_id,
                      "accountId": s.account_public_id, "subscriptionDetailsId": s.plan_public_id,
                      "from": from, "to": s.status});
    emit(tx, s.partner_id, EventType::SubscriptionStatusChanged, s.user_id, data, now).await.map(drop)
}

async fn user_public_id(tx: &mut Tx<'_>, user: i64) -> StoreResult<String> {
    repo::user_public_id_in(tx, user).await?.ok_or_else(|| corrupt("user"))
}

/// Moves a locked subscription to `to` (with its event), when that is a move.
async fn move_subscription(
    tx: &mut Tx<'_>,
    s: &mut SubscriptionRecord,
    to: SubscriptionStatus,
    now: i64,
) -> StoreResult<()> {
    if s.status == to.as_str() {
        return repo::update_subscription(tx, s, now).await;
    }
    let from = std::mem::replace(&mut s.status, to.as_str().to_owned());
    if to == SubscriptionStatus::Canceled {
        s.canceled_at = Some(now);
    }
    repo::update_subscription(tx, s, now).await?;
    status_event(tx, s, Some(&from), now).await
}

pub async fn subscriptions(
    store: &Store,
    partner: PartnerId,
    user: &PublicUserId,
) -> Result<Vec<Subscription>, BillingError> {
    let id = user_id(store, partner, user).await?;
    let records = store.subscriptions_of(partner, id).await?;
    let mut out = Vec::with_capacity(records.len());
    for r in &records {
        let invoice = store.current_invoice(r.id, r.period).await?;
        out.push(Subscription::of(r, invoice.as_ref())?);
    }
    Ok(out)
}

/// `POST /subscriptions/{id}/cancel`: at the period's end (the default: the customer keeps what
/// was paid for), or now. Canceling now ends the subscription at once and voids an unpaid
/// invoice; a paid period is not refunded (documented; partners refund through their provider).
pub async fn cancel_subscription(
    store: &Store,
    partner: PartnerId,
    user: &PublicUserId,
    id: &str,
    at_period_end: bool,
    now: i64,
) -> Result<Subscription, BillingError> {
    let (user, id) = (user.clone(), id.to_owned());
    store
        .write(move |mut tx| {
            boxed(async move {
                let owner = locked_user(&mut tx, partner, &user).await?;
                let found = repo::subscription_of(&mut tx, partner.get(), owner.id, &id)
                    .await?
                    .ok_or(BillingError::NotFound("subscription"))?;
                let mut s = repo::lock_subscription(&mut tx, found.id).await?.ok_or_else(|| corrupt("subscription"))?;
                if s.status == SubscriptionStatus::Canceled.as_str() {
                    return Err(BillingError::Conflict("The subscription is already canceled.".into()));
                }
                let invoice = repo::invoice_of_period(&mut tx, s.id, s.period).await?;
                // Nothing was paid for a subscription that never started: it ends now either way.
                let never_paid = s.status == SubscriptionStatus::Incomplete.as_str();
                if at_period_end && !never_paid {
                    s.cancel_at_period_end = true;
                    repo::update_subscription(&mut tx, &s, now).await?;
                } else {
                    if let Some(open) = invoice.as_ref().filter(|i| i.status == "open")
                        && !repo::void_invoice(&mut tx, open.id, now).await?
                    {
                        return Err(BillingError::InFlight);
                    }
                    move_subscription(&mut tx, &mut s, SubscriptionStatus::Canceled, now).await?;
                }
                let invoice = repo::invoice_of_period(&mut tx, s.id, s.period).await?;
                Ok(Subscription::of(&s, invoice.as_ref())?)
            })
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// Invoices

/// `GET /payments/invoices/{id}`: an invoice (`inv:…`) of the user; or, given a subscription
/// (`sub:…`), the invoice of its current period, created when the period is due and has none
/// yet ("get or create": a renewal the sweep has not reached is billed on the spot).
pub async fn invoice(
    store: &Store,
    partner: PartnerId,
    user: &PublicUserId,
    id: &str,
    now: i64,
) -> Result<Invoice, BillingError> {
    let (user, id) = (user.clone(), id.to_owned());
    let by_subscription = id.starts_with(SubscriptionId::PREFIX);
    store
        .write(move |mut tx| {
            boxed(async move {
                let owner = repo::user_row_in(&mut tx, partner.get(), user.as_str())
                    .await?
                    .ok_or(BillingError::NotFound("user"))?;
                let record = if by_subscription {
                    let found = repo::subscription_of(&mut tx, partner.get(), owner, &id)
                        .await?
                        .ok_or(BillingError::NotFound("subscription"))?;
                    let mut s =
                        repo::lock_subscription(&mut tx, found.id).await?.ok_or_else(|| corrupt("subscription"))?;
                    roll_periods(&mut tx, &mut s, now).await?;
                    match repo::invoice_of_period(&mut tx, s.id, s.period).await? {
                        Some(invoice) => invoice,
                        None => return Err(BillingError::NotFound("invoice due (the subscription is in its trial)")),
                    }
                } else {
                    repo::invoice_of(&mut tx, partner.get(), owner, &id)
                        .await?
                        .ok_or(BillingError::NotFound("invoice"))?
                };
                Ok(invoice_view(&mut tx, &record).await?)
            })
        })
        .await
}

/// Brings a locked subscription's period up to `now`: each period that ended starts the next
/// one with its invoice (a trial's end starts period 1). A subscription set to cancel at the
/// period's end is canceled instead. Returns whether a new invoice was opened.
async fn roll_periods(tx: &mut Tx<'_>, s: &mut SubscriptionRecord, now: i64) -> StoreResult<bool> {
    let billed = [SubscriptionStatus::Trialing, SubscriptionStatus::Active, SubscriptionStatus::PastDue];
    if s.period_end > now || !billed.iter().any(|b| b.as_str() == s.status) {
        return Ok(false);
    }
    if s.cancel_at_period_end {
        move_subscription(tx, s, SubscriptionStatus::Canceled, now).await?;
        return Ok(false);
    }
    // An unpaid period is the dunning's (`renew_due`); a new period starts only from a paid one.
    if s.status == SubscriptionStatus::PastDue.as_str() {
        return Ok(false);
    }
    if let Some(current) = repo::invoice_of_period(tx, s.id, s.period).await?
        && current.status == "open"
    {
        return Ok(false);
    }
    // Period n ends n intervals after the anchor (a trial, period 0, ends at the anchor).
    let interval = Interval::parse(&s.interval).ok_or_else(|| corrupt("interval"))?;
    let next = s.period + 1;
    let n = u32::try_from(next).map_err(|_| corrupt("period"))?;
    s.period_start = s.period_end;
    s.period_end = period_end(s.anchor_at, interval, n).ok_or_else(|| corrupt("period"))?;
    s.period = next;
    if s.status == SubscriptionStatus::Trialing.as_str() {
        move_subscription(tx, s, SubscriptionStatus::Active, now).await?;
    } else {
        repo::update_subscription(tx, s, now).await?;
    }
    open_invoice(tx, s, now).await?;
    Ok(true)
}
