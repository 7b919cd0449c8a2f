//! Seed 003 step 4: accounts, subscription tiers, subscriptions, invoices and their payment.
//! Each use case is one write, except paying, which is three around the provider's call (no
//! write waits on the network): claim the invoice's charge attempt (the database decides
//! between racing payers), charge with an idempotency key derived from the invoice and the
//! attempt, record the outcome in the append-only ledger with its effects.

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
use crate::payments::{ChargeOutcome, ChargeRequest, Provider, ProviderError};
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
    if let Some(existing) = repo::primary_account_in(tx, user.id).await? {
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
    kek: &Kek,
    http: &reqwest::Client,
    settings: &crate::payments::PaymentSettings,
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
            let key = kek.open_string(&secret_aad("secret_key", record.partner_id), &sealed)?;
            Ok(Provider::stripe(http.clone(), settings, key))
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
                    (SubscriptionStatus::Incomplete, 1, end)
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
    // An unpaid earlier period is the dunning's (`renew`); a new period starts only from a paid one.
    if s.status == SubscriptionStatus::PastDue.as_str() {
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

// ---------------------------------------------------------------------------------------------
// Paying

/// What a pay call ended with.
pub enum Paid {
    /// The invoice is paid (now, or before: paying a paid invoice answers its payment).
    Paid(Invoice),
    /// The provider declined the method; the invoice stays open.
    Declined(Invoice),
    /// Waiting on the customer (3-D Secure through the SDK, with this client secret) or the bank.
    Pending { invoice: Invoice, client_secret: Option<String>, status: String, reference: String },
}

/// Everything `pay_invoice` needs besides the store.
pub struct Payer<'a> {
    pub provider: &'a Provider,
    /// How long a claimed attempt is held before another payer may finish it.
    pub lease_ms: i64,
}

/// `POST /payments/invoices/{id}/pay`: charges `method` once for the invoice's amount.
pub async fn pay_invoice(
    store: &Store,
    payer: &Payer<'_>,
    partner: PartnerId,
    user: &PublicUserId,
    invoice: &str,
    method: &str,
    now: i64,
) -> Result<Paid, BillingError> {
    let owner = user_id(store, partner, user).await?;
    // Two rounds at most: the first may finish an attempt a crashed payer left (with its own
    // method and key) before this payer's own attempt.
    for _ in 0..2 {
        match claim(store, partner, owner, invoice, method, payer.lease_ms, now).await? {
            Claim::Done(paid) => return Ok(*paid),
            Claim::Busy => {
                wait_for_charge(store, partner, owner, invoice, payer.lease_ms).await?;
                continue;
            }
            Claim::Attempt(attempt) => {
                let finished_other = attempt.method != method;
                let outcome = charge(store, payer.provider, &attempt, false, now).await?;
                match outcome {
                    Paid::Declined(_) if finished_other => continue,
                    other => return Ok(other),
                }
            }
        }
    }
    let view = read_invoice(store, partner, owner, invoice).await?;
    match view.status {
        InvoiceStatus::Paid => Ok(Paid::Paid(view)),
        _ => Err(BillingError::InFlight),
    }
}

struct Attempt {
    invoice: InvoiceRecord,
    attempt: i64,
    method: String,
    customer: Option<CustomerRecord>,
    user_public_id: String,
}

enum Claim {
    Done(Box<Paid>),
    Busy,
    Attempt(Box<Attempt>),
}

async fn claim(
    store: &Store,
    partner: PartnerId,
    owner: i64,
    invoice: &str,
    method: &str,
    lease_ms: i64,
    now: i64,
) -> Result<Claim, BillingError> {
    let (invoice, method) = (invoice.to_owned(), method.to_owned());
    store
        .write(move |mut tx| {
            boxed(async move {
                let record = repo::invoice_of(&mut tx, partner.get(), owner, &invoice)
                    .await?
                    .ok_or(BillingError::NotFound("invoice"))?;
                match record.status.as_str() {
                    "paid" => return Ok(Claim::Done(Box::new(Paid::Paid(invoice_view(&mut tx, &record).await?)))),
                    "void" => {
                        return Err(BillingError::Conflict("The invoice is void: its subscription ended.".into()));
                    }
                    _ => {}
                }
                let Some((attempt, method)) =
                    repo::claim_charge(&mut tx, record.id, &method, now.saturating_add(lease_ms), now).await?
                else {
                    return Ok(Claim::Busy);
                };
                let customer = repo::customer_in(&mut tx, owner).await?;
                let user_public_id = user_public_id(&mut tx, owner).await?;
                Ok(Claim::Attempt(Box::new(Attempt { invoice: record, attempt, method, customer, user_public_id })))
            })
        })
        .await
}

/// Waits (up to the lease) for another payer's attempt to end.
async fn wait_for_charge(
    store: &Store,
    partner: PartnerId,
    owner: i64,
    invoice: &str,
    lease_ms: i64,
) -> Result<(), BillingError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(lease_ms.max(0) as u64);
    while tokio::time::Instant::now() < deadline {
        let record = store.invoice_row(partner, owner, invoice).await?.ok_or(BillingError::NotFound("invoice"))?;
        if record.charging_attempt.is_none() || record.charging_ref.is_some() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn read_invoice(store: &Store, partner: PartnerId, owner: i64, invoice: &str) -> Result<Invoice, BillingError> {
    let invoice = invoice.to_owned();
    store
        .write(move |mut tx| {
            boxed(async move {
                let record = repo::invoice_of(&mut tx, partner.get(), owner, &invoice)
                    .await?
                    .ok_or(BillingError::NotFound("invoice"))?;
                Ok(invoice_view(&mut tx, &record).await?)
            })
        })
        .await
}

/// The provider's customer of the attempt's user, created (and recorded) on first use.
async fn customer_for(store: &Store, provider: &Provider, attempt: &Attempt, now: i64) -> Result<String, BillingError> {
    if let Some(c) = attempt.customer.as_ref().filter(|c| c.provider == provider.name()) {
        return Ok(c.customer_id.clone());
    }
    let customer_id = provider.create_customer(&attempt.user_public_id).await?;
    let record = CustomerRecord {
        user_id: attempt.invoice.user_id,
        provider: provider.name().to_owned(),
        customer_id: customer_id.clone(),
        payment_method: None,
    };
    let partner = attempt.invoice.partner_id;
    store.write(move |mut tx| boxed(async move { repo::save_customer(&mut tx, partner, &record, now).await })).await?;
    Ok(customer_id)
}

/// Makes the claimed attempt's charge and records how it ended.
async fn charge(
    store: &Store,
    provider: &Provider,
    attempt: &Attempt,
    off_session: bool,
    now: i64,
) -> Result<Paid, BillingError> {
    let invoice = &attempt.invoice;
    let customer = match customer_for(store, provider, attempt, now).await {
        Ok(c) => c,
        Err(e) => {
            release(store, invoice.id, attempt.attempt).await?;
            return Err(e);
        }
    };
    let amount = money(invoice.amount_due, &invoice.currency)?;
    let request = ChargeRequest {
        amount,
        customer: customer.clone(),
        payment_method: attempt.method.clone(),
        off_session,
        // One attempt, one key: a retried call (or a payer finishing a crashed one) is the same
        // charge at the provider, never a second.
        idempotency_key: format!("onboard-{}-attempt-{}", invoice.public_id, attempt.attempt),
        invoice: invoice.public_id.clone(),
    };
    let outcome = match provider.charge(&request).await {
        Ok(outcome) => Ok(outcome),
        Err(ProviderError::Unavailable(e)) => {
            // The outcome is unknown: the attempt stays in flight, free for the next payer to
            // finish with the same key.
            release(store, invoice.id, attempt.attempt).await?;
            return Err(ProviderError::Unavailable(e).into());
        }
        Err(ProviderError::Rejected(e)) => Err(e),
    };
    record_outcome(store, provider.name(), attempt, &customer, outcome, off_session, now).await
}

/// Keeps the attempt in flight with no holder (its outcome unknown).
async fn release(store: &Store, invoice: i64, attempt: i64) -> Result<(), BillingError> {
    store
        .write(move |mut tx| boxed(async move { repo::hold_charge(&mut tx, invoice, attempt, None, None).await }))
        .await?;
    Ok(())
}

/// Records a charge's outcome: the ledger entry, the invoice, the subscription, the saved
/// method and the events, in one write. `Err(text)` is a request the provider refused.
async fn record_outcome(
    store: &Store,
    provider: &'static str,
    attempt: &Attempt,
    customer: &str,
    outcome: Result<ChargeOutcome, String>,
    off_session: bool,
    now: i64,
) -> Result<Paid, BillingError> {
    let invoice = attempt.invoice.clone();
    let (number, method, customer) = (attempt.attempt, attempt.method.clone(), customer.to_owned());
    let rejected = outcome.as_ref().err().cloned();
    let result = store
        .write(move |mut tx| {
            boxed(async move {
                let payment = PaymentId::generate();
                let mut entry = NewLedgerEntry {
                    public_id: payment.as_str(),
                    partner_id: invoice.partner_id,
                    user_id: invoice.user_id,
                    invoice_id: invoice.id,
                    kind: LedgerKind::Failure.as_str(),
                    amount_minor: 0,
                    currency: &invoice.currency,
                    attempt: number,
                    provider,
                    provider_ref: None,
                    payment_method: Some(&method),
                    failure_code: None,
                    decline_code: None,
                    failure_message: None,
                    off_session,
                };
                let paid = match &outcome {
                    Ok(ChargeOutcome::Pending { reference, client_secret, status }) => {
                        repo::hold_charge(&mut tx, invoice.id, number, Some(now + 24 * 3_600_000), Some(reference))
                            .await?;
                        let record = repo::invoice_in(&mut tx, invoice.id).await?.ok_or_else(|| corrupt("invoice"))?;
                        return Ok(Paid::Pending {
                            invoice: invoice_view(&mut tx, &record).await?,
                            client_secret: client_secret.clone(),
                            status: status.clone(),
                            reference: reference.clone(),
                        });
                    }
                    Ok(ChargeOutcome::Succeeded { reference }) => {
                        entry.kind = LedgerKind::Charge.as_str();
                        entry.amount_minor = invoice.amount_due;
                        entry.provider_ref = Some(reference);
                        true
                    }
                    Ok(ChargeOutcome::Declined { reference, code, decline_code, message }) => {
                        entry.provider_ref = reference.as_deref();
                        entry.failure_code = Some(code);
                        entry.decline_code = decline_code.as_deref();
                        entry.failure_message = Some(message);
                        false
                    }
                    Err(text) => {
                        entry.failure_code = Some("provider_rejected");
                        entry.failure_message = Some(text);
                        false
                    }
                };
                if !repo::settle_charge(&mut tx, invoice.id, number, paid, now).await? {
                    // Another payer finished this attempt first (its lease ran out): its
                    // record stands.
                    let record = repo::invoice_in(&mut tx, invoice.id).await?.ok_or_else(|| corrupt("invoice"))?;
                    let view = invoice_view(&mut tx, &record).await?;
                    return Ok(if view.status == InvoiceStatus::Paid {
                        Paid::Paid(view)
                    } else {
                        Paid::Declined(view)
                    });
                }
                repo::append_ledger(&mut tx, &entry, now).await?;
                apply_payment_effects(&mut tx, &invoice, paid, &customer, provider, &method, entry.failure_code, now)
                    .await?;
                let record = repo::invoice_in(&mut tx, invoice.id).await?.ok_or_else(|| corrupt("invoice"))?;
                let view = invoice_view(&mut tx, &record).await?;
                Ok::<_, BillingError>(if paid { Paid::Paid(view) } else { Paid::Declined(view) })
            })
        })
        .await?;
    match rejected {
        Some(text) => Err(ProviderError::Rejected(text).into()),
        None => Ok(result),
    }
}

/// What a recorded charge changes besides the ledger and the invoice: the subscription (paid:
/// `active`), the method renewals will charge, and the partner's events.
#[allow(clippy::too_many_arguments)]
async fn apply_payment_effects(
    tx: &mut Tx<'_>,
    invoice: &InvoiceRecord,
    paid: bool,
    customer: &str,
    provider: &str,
    method: &str,
    failure: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    let user = user_public_id(tx, invoice.user_id).await?;
    let data = json!({"userId": user, "invoiceId": invoice.public_id, "subscriptionId": invoice.subscription_public_id,
                      "amount": invoice.amount_due, "currency": invoice.currency, "failureCode": failure});
    if !paid {
        return emit(tx, invoice.partner_id, EventType::InvoicePaymentFailed, invoice.user_id, data, now)
            .await
            .map(drop);
    }
    emit(tx, invoice.partner_id, EventType::InvoicePaid, invoice.user_id, data, now).await?;
    let saved = CustomerRecord {
        user_id: invoice.user_id,
        provider: provider.to_owned(),
        customer_id: customer.to_owned(),
        payment_method: Some(method.to_owned()),
    };
    repo::save_customer(tx, invoice.partner_id, &saved, now).await?;
    let Some(mut s) = repo::lock_subscription(tx, invoice.subscription_id).await? else { return Ok(()) };
    let waiting = [SubscriptionStatus::Incomplete, SubscriptionStatus::PastDue];
    if s.period == invoice.period && waiting.iter().any(|w| w.as_str() == s.status) {
        move_subscription(tx, &mut s, SubscriptionStatus::Active, now).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Renewals

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RenewalReport {
    /// Periods started (a new invoice each).
    pub renewed: usize,
    /// Renewal invoices paid off-session.
    pub charged: usize,
    /// Renewal charges declined (the subscription is `past_due`, retried later).
    pub failed: usize,
    pub canceled: usize,
}

/// What a subscription needed at the sweep's `now`.
enum Due {
    Nothing,
    Canceled,
    Charge { attempt: Box<Attempt>, renewed: bool },
}

/// The renewal sweep at `now`: every subscription whose period ended starts the next one with
/// its invoice and charges the saved method off-session; a declined renewal makes it
/// `past_due` and is retried `RENEWAL_RETRY_DAYS` after the period began; when the last retry
/// fails it is `canceled` and the invoice void. Subscriptions set to cancel at the period's end
/// are canceled. State lives in the rows (period ends, invoice attempts), so a sweep on any node,
/// after any crash, picks up where another left off; the claims make it once.
pub async fn renew_due(
    store: &Store,
    payments: &crate::payments::Payments,
    now: i64,
) -> Result<RenewalReport, BillingError> {
    let work = store.write(move |mut tx| boxed(async move { repo::renewal_work(&mut tx, now, 500).await })).await?;
    let mut report = RenewalReport::default();
    for id in work {
        if let Err(err) = renew_one(store, payments, id, now, &mut report).await {
            tracing::warn!(subscription = id, error = %err, "renewal failed; the next sweep retries");
        }
    }
    Ok(report)
}

async fn renew_one(
    store: &Store,
    payments: &crate::payments::Payments,
    id: i64,
    now: i64,
    report: &mut RenewalReport,
) -> Result<(), BillingError> {
    let lease = payments.lease_ms();
    let due = store
        .write(move |mut tx| {
            boxed(async move {
                let Some(mut s) = repo::lock_subscription(&mut tx, id).await? else { return Ok(Due::Nothing) };
                let renewed = roll_periods(&mut tx, &mut s, now).await?;
                if s.status == SubscriptionStatus::Canceled.as_str() {
                    return Ok(if s.canceled_at == Some(now) { Due::Canceled } else { Due::Nothing });
                }
                let Some(invoice) = repo::invoice_of_period(&mut tx, s.id, s.period).await? else {
                    return Ok(Due::Nothing);
                };
                if invoice.status != "open" {
                    return Ok(Due::Nothing);
                }
                let retries = crate::domain::billing::RENEWAL_RETRY_DAYS;
                let due = match SubscriptionStatus::parse(&s.status) {
                    Some(SubscriptionStatus::Active) => true,
                    Some(SubscriptionStatus::PastDue) => {
                        let done = usize::try_from(invoice.attempts).unwrap_or(usize::MAX);
                        if done > retries.len() && invoice.charging_attempt.is_none() {
                            repo::void_invoice(&mut tx, invoice.id, now).await?;
                            move_subscription(&mut tx, &mut s, SubscriptionStatus::Canceled, now).await?;
                            return Ok(Due::Canceled);
                        }
                        let day = retries.get(done.saturating_sub(1)).copied().unwrap_or(0);
                        now >= crate::domain::billing::days_after(invoice.period_start, day)
                    }
                    _ => false,
                };
                if !due {
                    return Ok(Due::Nothing);
                }
                let customer = repo::customer_in(&mut tx, s.user_id).await?;
                let method = customer.as_ref().and_then(|c| c.payment_method.clone()).unwrap_or_default();
                let Some((attempt, method)) =
                    repo::claim_charge(&mut tx, invoice.id, &method, now.saturating_add(lease), now).await?
                else {
                    return Ok(Due::Nothing);
                };
                let user_public_id = user_public_id(&mut tx, s.user_id).await?;
                let attempt = Attempt { invoice, attempt, method, customer, user_public_id };
                Ok::<_, BillingError>(Due::Charge { attempt: Box::new(attempt), renewed })
            })
        })
        .await?;
    let (attempt, renewed) = match due {
        Due::Nothing => return Ok(()),
        Due::Canceled => {
            report.canceled += 1;
            return Ok(());
        }
        Due::Charge { attempt, renewed } => (attempt, renewed),
    };
    report.renewed += usize::from(renewed);
    let partner = PartnerId::new(attempt.invoice.partner_id).map_err(|_| corrupt("partner id"))?;
    let partner = store.find_partner(partner).await?.ok_or(BillingError::NotFound("partner"))?;
    let provider = match provider_of(store, &payments.kek, &payments.http, &payments.settings, &partner).await {
        Ok(provider) => provider,
        Err(err) => {
            release(store, attempt.invoice.id, attempt.attempt).await?;
            return Err(err);
        }
    };
    let paid = if attempt.method.is_empty() {
        // No method on file (a trial ended before any payment): a failed attempt, no call made.
        let outcome = ChargeOutcome::Declined {
            reference: None,
            code: "payment_method_missing".into(),
            decline_code: None,
            message: "No payment method is saved for renewals; pay the invoice to keep the subscription.".into(),
        };
        record_outcome(store, provider.name(), &attempt, "", Ok(outcome), true, now).await?
    } else {
        charge(store, &provider, &attempt, true, now).await?
    };
    match paid {
        Paid::Paid(_) => report.charged += 1,
        Paid::Pending { .. } => {}
        Paid::Declined(_) => {
            report.failed += 1;
            let (subscription, invoice) = (attempt.invoice.subscription_id, attempt.invoice.id);
            let canceled = store
                .write(move |mut tx| {
                    boxed(async move {
                        let Some(mut s) = repo::lock_subscription(&mut tx, subscription).await? else {
                            return Ok(false);
                        };
                        let Some(open) = repo::invoice_in(&mut tx, invoice).await? else { return Ok(false) };
                        let retries = crate::domain::billing::RENEWAL_RETRY_DAYS.len();
                        if usize::try_from(open.attempts).unwrap_or(usize::MAX) > retries {
                            // The last retry failed: the subscription ends, unpaid.
                            repo::void_invoice(&mut tx, invoice, now).await?;
                            move_subscription(&mut tx, &mut s, SubscriptionStatus::Canceled, now).await?;
                            return Ok(true);
                        }
                        if s.status == SubscriptionStatus::Active.as_str() {
                            move_subscription(&mut tx, &mut s, SubscriptionStatus::PastDue, now).await?;
                        }
                        Ok::<_, StoreError>(false)
                    })
                })
                .await?;
            report.canceled += usize::from(canceled);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The provider's webhooks

/// A verified Stripe event about a PaymentIntent.
pub struct IntentEvent {
    pub partner: PartnerId,
    /// `evt_…`, recorded once.
    pub event_id: String,
    pub event_type: String,
    pub intent: String,
    /// For `payment_intent.payment_failed`: the error's code, decline code and message.
    pub failure: Option<(String, Option<String>, String)>,
    pub raw_body: String,
}

/// What an event did: `settled` (an attempt waiting on the customer or the bank ended),
/// `duplicate` (seen before), `ignored` (no attempt here waits on that payment, or a type not
/// acted on).
pub async fn apply_intent_event(store: &Store, event: IntentEvent, now: i64) -> Result<&'static str, BillingError> {
    let outcome = match event.event_type.as_str() {
        "payment_intent.succeeded" => Some(ChargeOutcome::Succeeded { reference: event.intent.clone() }),
        "payment_intent.payment_failed" => {
            let (code, decline_code, message) =
                event.failure.clone().unwrap_or_else(|| ("card_declined".into(), None, "The payment failed.".into()));
            Some(ChargeOutcome::Declined { reference: Some(event.intent.clone()), code, decline_code, message })
        }
        _ => None,
    };
    let partner = event.partner.get();
    let (intent, event_id, event_type, raw) = (event.intent.clone(), event.event_id, event.event_type, event.raw_body);
    let waiting = outcome.is_some();
    // The event is recorded first, once; the attempt it settles is read in the same write.
    let attempt = store
        .write(move |mut tx| {
            boxed(async move {
                let invoice = if waiting { repo::invoice_charging(&mut tx, partner, &intent).await? } else { None };
                let effect = if invoice.is_some() { "settled" } else { "ignored" };
                if !repo::record_payment_event(&mut tx, partner, &event_id, &event_type, &raw, effect, now).await? {
                    return Ok::<_, BillingError>(Err("duplicate"));
                }
                let Some(invoice) = invoice else { return Ok(Err("ignored")) };
                let (Some(number), Some(method)) = (invoice.charging_attempt, invoice.charging_method.clone()) else {
                    return Ok(Err("ignored"));
                };
                let customer = repo::customer_in(&mut tx, invoice.user_id).await?;
                let user_public_id = user_public_id(&mut tx, invoice.user_id).await?;
                Ok(Ok(Attempt { invoice, attempt: number, method, customer, user_public_id }))
            })
        })
        .await?;
    let attempt = match attempt {
        Ok(attempt) => attempt,
        Err(effect) => return Ok(effect),
    };
    let customer = attempt.customer.as_ref().map(|c| c.customer_id.clone()).unwrap_or_default();
    let outcome = outcome.ok_or_else(|| corrupt("event"))?;
    record_outcome(store, "stripe", &attempt, &customer, Ok(outcome), false, now).await?;
    Ok("settled")
}
