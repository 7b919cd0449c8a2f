//! Accounts, tiers (plans), subscriptions, invoices, the payments ledger, the provider's
//! customers, and partners' payment settings. Rows only: what may change when is decided in
//! `core::billing`.

use super::{Store, StoreResult, Tx};
use crate::domain::PartnerId;

macro_rules! account_columns {
    () => {
        "id, public_id, partner_id, user_id, is_primary, status, created_at"
    };
}

macro_rules! plan_columns {
    () => {
        "id, public_id, partner_id, name, description, amount_minor, currency, interval, trial_days, archived_at, created_at"
    };
}

/// Subscriptions read with their account's and tier's public ids and the tier's price.
macro_rules! subscription_select {
    ($where:literal) => {
        concat!(
            "SELECT s.id, s.public_id, s.partner_id, s.user_id, s.account_id, a.public_id AS account_public_id,
                    s.plan_id, p.public_id AS plan_public_id, p.interval, p.amount_minor, p.currency, s.status,
                    s.anchor_at, s.period, s.period_start, s.period_end, s.cancel_at_period_end, s.canceled_at,
                    s.created_at, s.updated_at
             FROM subscriptions s JOIN accounts a ON a.id = s.account_id JOIN plans p ON p.id = s.plan_id
             WHERE ",
            $where
        )
    };
}

/// Invoices read with their subscription's public id and the sum of their ledger.
macro_rules! invoice_select {
    ($where:literal) => {
        concat!(
            "SELECT i.id, i.public_id, i.partner_id, i.user_id, i.subscription_id, s.public_id AS subscription_public_id,
                    i.period, i.period_start, i.period_end, i.amount_due, i.currency, i.status, i.attempts,
                    i.charging_attempt, i.charging_method, i.charging_until, i.charging_ref, i.charging_off_session, i.created_at, i.paid_at, i.voided_at,
                    CAST(COALESCE((SELECT SUM(CASE l.kind WHEN 'charge' THEN l.amount_minor WHEN 'refund' THEN -l.amount_minor ELSE 0 END)
                              FROM ledger_entries l WHERE l.invoice_id = i.id), 0) AS BIGINT) AS amount_paid
             FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id
             WHERE ",
            $where
        )
    };
}

macro_rules! ledger_columns {
    () => {
        "public_id, invoice_id, kind, amount_minor, currency, attempt, provider, provider_ref, payment_method, failure_code,
         decline_code, failure_message, off_session, created_at"
    };
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountRecord {
    pub id: i64,
    pub public_id: String,
    pub partner_id: i64,
    pub user_id: i64,
    pub is_primary: bool,
    pub status: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PlanRecord {
    pub id: i64,
    pub public_id: String,
    pub partner_id: i64,
    pub name: String,
    pub description: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub interval: String,
    pub trial_days: i64,
    pub archived_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SubscriptionRecord {
    pub id: i64,
    pub public_id: String,
    pub partner_id: i64,
    pub user_id: i64,
    pub account_id: i64,
    pub account_public_id: String,
    pub plan_id: i64,
    pub plan_public_id: String,
    pub interval: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    pub anchor_at: i64,
    pub period: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InvoiceRecord {
    pub id: i64,
    pub public_id: String,
    pub partner_id: i64,
    pub user_id: i64,
    pub subscription_id: i64,
    pub subscription_public_id: String,
    pub period: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub amount_due: i64,
    pub currency: String,
    pub status: String,
    pub attempts: i64,
    pub charging_attempt: Option<i64>,
    pub charging_method: Option<String>,
    pub charging_until: Option<i64>,
    /// The provider's payment of an attempt waiting on the customer or the bank.
    pub charging_ref: Option<String>,
    pub charging_off_session: bool,
    pub created_at: i64,
    pub paid_at: Option<i64>,
    pub voided_at: Option<i64>,
    /// Charges less refunds, from the ledger.
    pub amount_paid: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LedgerRecord {
    pub public_id: String,
    pub invoice_id: i64,
    pub kind: String,
    pub amount_minor: i64,
    pub currency: String,
    pub attempt: i64,
    pub provider: String,
    pub provider_ref: Option<String>,
    pub payment_method: Option<String>,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
    pub failure_message: Option<String>,
    pub off_session: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CustomerRecord {
    pub user_id: i64,
    pub provider: String,
    pub customer_id: String,
    pub payment_method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PartnerPaymentsRecord {
    pub partner_id: i64,
    pub provider: String,
    /// Sealed.
    pub secret_key: Option<Vec<u8>>,
    /// Sealed.
    pub webhook_secret: Option<Vec<u8>>,
    pub updated_at: i64,
}

pub struct NewAccount<'a> {
    pub public_id: &'a str,
    pub partner_id: i64,
    pub user_id: i64,
    pub is_primary: bool,
    pub opened_by: &'a str,
}

/// Opens an account. A second primary account of one user is refused by the database
/// (`Conflict`).
pub async fn insert_account(tx: &mut Tx<'_>, new: &NewAccount<'_>, now: i64) -> StoreResult<AccountRecord> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(concat!(
            "INSERT INTO accounts (public_id, partner_id, user_id, is_primary, opened_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
            account_columns!()
        ))
        .bind(new.public_id)
        .bind(new.partner_id)
        .bind(new.user_id)
        .bind(new.is_primary)
        .bind(new.opened_by)
        .bind(now)
        .fetch_one(conn)
        .await?
    }))
}

/// The user's primary account, read in the open write.
// By partner and user: SQLite cannot use the partial index `accounts_primary` (`WHERE is_primary
// = 1`) for `is_primary = TRUE`, so the lookup by user alone read every account — 6.2 ms a
// provisioning at 1.4 million accounts, a third of the writer's time in the soak benchmark
// (BENCHMARKS.md, 2026-12-07). `accounts_user (partner_id, user_id)` serves both databases.
pub async fn primary_account_in(tx: &mut Tx<'_>, partner: i64, user: i64) -> StoreResult<Option<AccountRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts WHERE partner_id = $1 AND user_id = $2 AND is_primary = TRUE"
        ))
        .bind(partner)
        .bind(user)
        .fetch_optional(conn)
        .await?
    }))
}

/// The user's account `public_id`, read in the open write.
pub async fn account_in(
    tx: &mut Tx<'_>,
    partner: i64,
    user: i64,
    public_id: &str,
) -> StoreResult<Option<AccountRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts WHERE partner_id = $1 AND user_id = $2 AND public_id = $3"
        ))
        .bind(partner)
        .bind(user)
        .bind(public_id)
        .fetch_optional(conn)
        .await?
    }))
}

pub struct NewPlan<'a> {
    pub public_id: &'a str,
    pub partner_id: i64,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub interval: &'a str,
    pub trial_days: i64,
}

pub async fn insert_plan(tx: &mut Tx<'_>, new: &NewPlan<'_>, now: i64) -> StoreResult<PlanRecord> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(concat!(
            "INSERT INTO plans (public_id, partner_id, name, description, amount_minor, currency, interval, trial_days, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
            plan_columns!()
        ))
        .bind(new.public_id)
        .bind(new.partner_id)
        .bind(new.name)
        .bind(new.description)
        .bind(new.amount_minor)
        .bind(new.currency)
        .bind(new.interval)
        .bind(new.trial_days)
        .bind(now)
        .fetch_one(conn)
        .await?
    }))
}

/// The partner's tier `public_id` (archived or not), read in the open write.
pub async fn plan_in(tx: &mut Tx<'_>, partner: i64, public_id: &str) -> StoreResult<Option<PlanRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(concat!("SELECT ", plan_columns!(), " FROM plans WHERE partner_id = $1 AND public_id = $2"))
            .bind(partner)
            .bind(public_id)
            .fetch_optional(conn)
            .await?
    }))
}

/// Archives a tier; false when it was archived already.
pub async fn archive_plan(tx: &mut Tx<'_>, id: i64, now: i64) -> StoreResult<bool> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query("UPDATE plans SET archived_at = $1 WHERE id = $2 AND archived_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected()
            == 1
    }))
}

pub struct NewSubscription<'a> {
    pub public_id: &'a str,
    pub partner_id: i64,
    pub user_id: i64,
    pub account_id: i64,
    pub plan_id: i64,
    pub status: &'a str,
    pub anchor_at: i64,
    pub period: i64,
    pub period_start: i64,
    pub period_end: i64,
}

/// A new subscription; a second live one of the account to the tier is refused by the
/// database (`Conflict`).
pub async fn insert_subscription(tx: &mut Tx<'_>, new: &NewSubscription<'_>, now: i64) -> StoreResult<i64> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "INSERT INTO subscriptions (public_id, partner_id, user_id, account_id, plan_id, status, anchor_at, period,
                                        period_start, period_end, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
        )
        .bind(new.public_id)
        .bind(new.partner_id)
        .bind(new.user_id)
        .bind(new.account_id)
        .bind(new.plan_id)
        .bind(new.status)
        .bind(new.anchor_at)
        .bind(new.period)
        .bind(new.period_start)
        .bind(new.period_end)
        .bind(now)
        .fetch_one(conn)
        .await?
    }))
}

/// Locks a subscription (PostgreSQL: the row, until the write ends) and reads it.
pub async fn lock_subscription(tx: &mut Tx<'_>, id: i64) -> StoreResult<Option<SubscriptionRecord>> {
    on_tx!(tx, |conn| {
        sqlx::query("UPDATE subscriptions SET updated_at = updated_at WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await
            .map(drop)?
    });
    Ok(on_tx!(tx, |conn| { sqlx::query_as(subscription_select!("s.id = $1")).bind(id).fetch_optional(conn).await? }))
}

/// The subscription `public_id` of the user (`None` for anyone else's).
pub async fn subscription_of(
    tx: &mut Tx<'_>,
    partner: i64,
    user: i64,
    public_id: &str,
) -> StoreResult<Option<SubscriptionRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(subscription_select!("s.partner_id = $1 AND s.user_id = $2 AND s.public_id = $3"))
            .bind(partner)
            .bind(user)
            .bind(public_id)
            .fetch_optional(conn)
            .await?
    }))
}

/// Writes a subscription's state and period back.
pub async fn update_subscription(tx: &mut Tx<'_>, s: &SubscriptionRecord, now: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE subscriptions SET status = $1, period = $2, period_start = $3, period_end = $4,
                    cancel_at_period_end = $5, canceled_at = $6, updated_at = $7
             WHERE id = $8",
        )
        .bind(&s.status)
        .bind(s.period)
        .bind(s.period_start)
        .bind(s.period_end)
        .bind(s.cancel_at_period_end)
        .bind(s.canceled_at)
        .bind(now)
        .bind(s.id)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

pub struct NewInvoice<'a> {
    pub public_id: &'a str,
    pub partner_id: i64,
    pub user_id: i64,
    pub subscription_id: i64,
    pub period: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub amount_due: i64,
    pub currency: &'a str,
}

/// The period's invoice, created unless it exists (one per subscription and period, enforced
/// by the database). Its id either way.
pub async fn ensure_invoice(tx: &mut Tx<'_>, new: &NewInvoice<'_>, now: i64) -> StoreResult<i64> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO invoices (public_id, partner_id, user_id, subscription_id, period, period_start, period_end,
                                   amount_due, currency, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open', $10)
             ON CONFLICT (subscription_id, period) DO NOTHING",
        )
        .bind(new.public_id)
        .bind(new.partner_id)
        .bind(new.user_id)
        .bind(new.subscription_id)
        .bind(new.period)
        .bind(new.period_start)
        .bind(new.period_end)
        .bind(new.amount_due)
        .bind(new.currency)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map(drop)?
    });
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT id FROM invoices WHERE subscription_id = $1 AND period = $2")
            .bind(new.subscription_id)
            .bind(new.period)
            .fetch_one(conn)
            .await?
    }))
}

pub async fn invoice_in(tx: &mut Tx<'_>, id: i64) -> StoreResult<Option<InvoiceRecord>> {
    Ok(on_tx!(tx, |conn| { sqlx::query_as(invoice_select!("i.id = $1")).bind(id).fetch_optional(conn).await? }))
}

/// The invoice `public_id` of the user (`None` for anyone else's).
pub async fn invoice_of(
    tx: &mut Tx<'_>,
    partner: i64,
    user: i64,
    public_id: &str,
) -> StoreResult<Option<InvoiceRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(invoice_select!("i.partner_id = $1 AND i.user_id = $2 AND i.public_id = $3"))
            .bind(partner)
            .bind(user)
            .bind(public_id)
            .fetch_optional(conn)
            .await?
    }))
}

/// The subscription's invoice of `period`, if it has one.
pub async fn invoice_of_period(tx: &mut Tx<'_>, subscription: i64, period: i64) -> StoreResult<Option<InvoiceRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(invoice_select!("i.subscription_id = $1 AND i.period = $2"))
            .bind(subscription)
            .bind(period)
            .fetch_optional(conn)
            .await?
    }))
}

/// Claims the next charge attempt of an open invoice: a new attempt (with `method` and
/// `off_session`) when none is in flight, or the in-flight one again when nobody holds it (its
/// outcome was never recorded: a crash or a provider that did not answer), to be resent exactly
/// as first sent. The database decides between racing payers: the claim is one conditional
/// UPDATE. `None` when the invoice is not open or another payer holds it.
pub async fn claim_charge(
    tx: &mut Tx<'_>,
    invoice: i64,
    method: &str,
    off_session: bool,
    lease_until: i64,
    now: i64,
) -> StoreResult<Option<ClaimedCharge>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(
            "UPDATE invoices SET
                 attempts = CASE WHEN charging_attempt IS NULL THEN attempts + 1 ELSE attempts END,
                 charging_off_session = CASE WHEN charging_attempt IS NULL THEN $2 ELSE charging_off_session END,
                 charging_attempt = COALESCE(charging_attempt, attempts + 1),
                 charging_method = COALESCE(charging_method, $1),
                 charging_until = $3
             WHERE id = $4 AND status = 'open' AND (charging_until IS NULL OR charging_until < $5)
             RETURNING charging_attempt AS attempt, charging_method AS method, charging_off_session AS off_session",
        )
        .bind(method)
        .bind(off_session)
        .bind(lease_until)
        .bind(invoice)
        .bind(now)
        .fetch_optional(conn)
        .await?
    }))
}

/// A claimed charge attempt: its number and what it is (to be) sent with.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedCharge {
    pub attempt: i64,
    pub method: String,
    pub off_session: bool,
}

/// Marks an open invoice paid by money that came outside its attempt in flight (a provider
/// webhook about an attempt already settled): whatever was in flight ends. False when it is not
/// open.
pub async fn mark_paid(tx: &mut Tx<'_>, invoice: i64, now: i64) -> StoreResult<bool> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE invoices SET status = 'paid', paid_at = $1, charging_attempt = NULL, charging_method = NULL,
                    charging_until = NULL, charging_ref = NULL
             WHERE id = $2 AND status = 'open'",
        )
        .bind(now)
        .bind(invoice)
        .execute(conn)
        .await?
        .rows_affected()
            == 1
    }))
}

/// Whether the ledger already holds money (a charge, or unapplied) from the provider's payment
/// `reference`.
pub async fn money_recorded(tx: &mut Tx<'_>, partner: i64, reference: &str) -> StoreResult<bool> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM ledger_entries WHERE partner_id = $1 AND provider_ref = $2 AND kind IN ('charge', 'unapplied')",
        )
        .bind(partner)
        .bind(reference)
        .fetch_one(conn)
        .await?
    }) > 0)
}

/// Off-session (renewal) charges of the invoice that were declined: the dunning's step.
pub async fn renewal_failures(tx: &mut Tx<'_>, invoice: i64) -> StoreResult<i64> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM ledger_entries WHERE invoice_id = $1 AND kind = 'failure' AND off_session = TRUE",
        )
        .bind(invoice)
        .fetch_one(conn)
        .await?
    }))
}

/// The partner's invoice `public_id`, whoever's it is (a provider webhook names it).
pub async fn invoice_of_partner(tx: &mut Tx<'_>, partner: i64, public_id: &str) -> StoreResult<Option<InvoiceRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(invoice_select!("i.partner_id = $1 AND i.public_id = $2"))
            .bind(partner)
            .bind(public_id)
            .fetch_optional(conn)
            .await?
    }))
}

/// Releases attempt `attempt` of the invoice, recording how it ended: the invoice `paid` (at
/// `now`) or left open. False when the attempt is no longer the one in flight.
pub async fn settle_charge(tx: &mut Tx<'_>, invoice: i64, attempt: i64, paid: bool, now: i64) -> StoreResult<bool> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE invoices SET charging_attempt = NULL, charging_method = NULL, charging_until = NULL, charging_ref = NULL,
                    charging_off_session = FALSE, status = CASE WHEN $1 THEN 'paid' ELSE status END,
                    paid_at = CASE WHEN $1 THEN $2 ELSE paid_at END
             WHERE id = $3 AND charging_attempt = $4 AND status = 'open'",
        )
        .bind(paid)
        .bind(now)
        .bind(invoice)
        .bind(attempt)
        .execute(conn)
        .await?
        .rows_affected()
            == 1
    }))
}

/// Keeps attempt `attempt` in flight with its outcome still to come: until `until` (None: a
/// payer may take it over at once, and finishes it with the same idempotency key), waiting on
/// the provider's payment `reference` when there is one.
pub async fn hold_charge(
    tx: &mut Tx<'_>,
    invoice: i64,
    attempt: i64,
    until: Option<i64>,
    reference: Option<&str>,
) -> StoreResult<bool> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE invoices SET charging_until = $1, charging_ref = COALESCE($2, charging_ref)
             WHERE id = $3 AND charging_attempt = $4 AND status = 'open'",
        )
        .bind(until)
        .bind(reference)
        .bind(invoice)
        .bind(attempt)
        .execute(conn)
        .await?
        .rows_affected()
            == 1
    }))
}

/// The partner's open invoice whose attempt in flight waits on the provider's payment
/// `reference`.
pub async fn invoice_charging(tx: &mut Tx<'_>, partner: i64, reference: &str) -> StoreResult<Option<InvoiceRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(invoice_select!("i.partner_id = $1 AND i.charging_ref = $2"))
            .bind(partner)
            .bind(reference)
            .fetch_optional(conn)
            .await?
    }))
}

/// Voids an open invoice nobody is charging; false otherwise.
pub async fn void_invoice(tx: &mut Tx<'_>, invoice: i64, now: i64) -> StoreResult<bool> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE invoices SET status = 'void', voided_at = $1 WHERE id = $2 AND status = 'open' AND charging_attempt IS NULL",
        )
        .bind(now)
        .bind(invoice)
        .execute(conn)
        .await?
        .rows_affected()
            == 1
    }))
}

pub struct NewLedgerEntry<'a> {
    pub public_id: &'a str,
    pub partner_id: i64,
    pub user_id: i64,
    pub invoice_id: i64,
    pub kind: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub attempt: i64,
    pub provider: &'a str,
    pub provider_ref: Option<&'a str>,
    pub payment_method: Option<&'a str>,
    pub failure_code: Option<&'a str>,
    pub decline_code: Option<&'a str>,
    pub failure_message: Option<&'a str>,
    pub off_session: bool,
}

/// Appends a ledger entry. A second charge of one invoice, or a second outcome of one attempt,
/// is refused by the database (`Conflict`).
pub async fn append_ledger(tx: &mut Tx<'_>, e: &NewLedgerEntry<'_>, now: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO ledger_entries (public_id, partner_id, user_id, invoice_id, kind, amount_minor, currency, attempt,
                                         provider, provider_ref, payment_method, failure_code, decline_code,
                                         failure_message, off_session, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(e.public_id)
        .bind(e.partner_id)
        .bind(e.user_id)
        .bind(e.invoice_id)
        .bind(e.kind)
        .bind(e.amount_minor)
        .bind(e.currency)
        .bind(e.attempt)
        .bind(e.provider)
        .bind(e.provider_ref)
        .bind(e.payment_method)
        .bind(e.failure_code)
        .bind(e.decline_code)
        .bind(e.failure_message)
        .bind(e.off_session)
        .bind(now)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

pub async fn ledger_of_in(tx: &mut Tx<'_>, invoice: i64) -> StoreResult<Vec<LedgerRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(concat!("SELECT ", ledger_columns!(), " FROM ledger_entries WHERE invoice_id = $1 ORDER BY id"))
            .bind(invoice)
            .fetch_all(conn)
            .await?
    }))
}

pub async fn customer_in(tx: &mut Tx<'_>, user: i64) -> StoreResult<Option<CustomerRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(
            "SELECT user_id, provider, customer_id, payment_method FROM payment_customers WHERE user_id = $1",
        )
        .bind(user)
        .fetch_optional(conn)
        .await?
    }))
}

/// Records the user's customer at the provider (the first one recorded stays) and, when given,
/// the method renewals charge.
pub async fn save_customer(tx: &mut Tx<'_>, partner: i64, record: &CustomerRecord, now: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO payment_customers (user_id, partner_id, provider, customer_id, payment_method, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (user_id) DO UPDATE SET
                 payment_method = COALESCE(excluded.payment_method, payment_customers.payment_method),
                 updated_at = excluded.updated_at",
        )
        .bind(record.user_id)
        .bind(partner)
        .bind(&record.provider)
        .bind(&record.customer_id)
        .bind(record.payment_method.as_deref())
        .bind(now)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

pub async fn upsert_partner_payments(tx: &mut Tx<'_>, r: &PartnerPaymentsRecord) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO partner_payments (partner_id, provider, secret_key, webhook_secret, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (partner_id) DO UPDATE SET provider = excluded.provider, secret_key = excluded.secret_key,
                 webhook_secret = excluded.webhook_secret, updated_at = excluded.updated_at",
        )
        .bind(r.partner_id)
        .bind(&r.provider)
        .bind(r.secret_key.as_deref())
        .bind(r.webhook_secret.as_deref())
        .bind(r.updated_at)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

/// Records a provider webhook event once; false when it was seen before.
pub async fn record_payment_event(
    tx: &mut Tx<'_>,
    partner: i64,
    event_id: &str,
    event_type: &str,
    raw_body: &str,
    effect: &str,
    now: i64,
) -> StoreResult<bool> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO payment_events (partner_id, event_id, type, raw_body, effect, received_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (partner_id, event_id) DO NOTHING",
        )
        .bind(partner)
        .bind(event_id)
        .bind(event_type)
        .bind(raw_body)
        .bind(effect)
        .bind(now)
        .execute(conn)
        .await?
        .rows_affected()
            == 1
    }))
}

/// The renewal sweep's work, oldest first: subscriptions whose period (or trial) ended by `now`,
/// every `past_due` one (its retries are timed from its invoice), and `incomplete` ones created
/// before `incomplete_before` (never paid: they expire).
pub async fn renewal_work(tx: &mut Tx<'_>, now: i64, incomplete_before: i64, limit: i64) -> StoreResult<Vec<i64>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "SELECT id FROM subscriptions
             WHERE (status IN ('trialing', 'active') AND period_end <= $1) OR status = 'past_due'
                OR (status = 'incomplete' AND created_at <= $2)
             ORDER BY period_end LIMIT $3",
        )
        .bind(now)
        .bind(incomplete_before)
        .bind(limit)
        .fetch_all(conn)
        .await?
    }))
}

/// Every sealed payment secret: (partner, column, value), for `onboard keys rewrap`.
pub async fn sealed_payment_secrets(tx: &mut Tx<'_>) -> StoreResult<Vec<(i64, &'static str, Vec<u8>)>> {
    type Row = (i64, Option<Vec<u8>>, Option<Vec<u8>>);
    let rows: Vec<Row> = on_tx!(tx, |conn| {
        sqlx::query_as("SELECT partner_id, secret_key, webhook_secret FROM partner_payments ORDER BY partner_id")
            .fetch_all(conn)
            .await?
    });
    let mut values = Vec::new();
    for (partner, secret_key, webhook_secret) in rows {
        values.extend(secret_key.map(|v| (partner, "secret_key", v)));
        values.extend(webhook_secret.map(|v| (partner, "webhook_secret", v)));
    }
    Ok(values)
}

/// Replaces one sealed payment secret with `resealed` unless it changed since it was read
/// (compare-and-swap: an operator's new secret committed meanwhile is kept).
pub async fn replace_sealed_payment_secret(
    tx: &mut Tx<'_>,
    partner: i64,
    column: &str,
    read: &[u8],
    resealed: &[u8],
) -> StoreResult<()> {
    // `column` is one of the two literals `sealed_payment_secrets` returns.
    let sql = match column {
        "secret_key" => "UPDATE partner_payments SET secret_key = $1 WHERE partner_id = $2 AND secret_key = $3",
        _ => "UPDATE partner_payments SET webhook_secret = $1 WHERE partner_id = $2 AND webhook_secret = $3",
    };
    on_tx!(tx, |conn| { sqlx::query(sql).bind(resealed).bind(partner).bind(read).execute(conn).await.map(drop)? });
    Ok(())
}

impl Store {
    pub async fn accounts_of(&self, partner: PartnerId, user: i64) -> StoreResult<Vec<AccountRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                account_columns!(),
                " FROM accounts WHERE partner_id = $1 AND user_id = $2 ORDER BY id"
            ))
            .bind(partner.get())
            .bind(user)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn account_of(
        &self,
        partner: PartnerId,
        user: i64,
        public_id: &str,
    ) -> StoreResult<Option<AccountRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                account_columns!(),
                " FROM accounts WHERE partner_id = $1 AND user_id = $2 AND public_id = $3"
            ))
            .bind(partner.get())
            .bind(user)
            .bind(public_id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// The partner's tiers, oldest first; archived ones too when `archived`.
    pub async fn plans(&self, partner: PartnerId, archived: bool) -> StoreResult<Vec<PlanRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                plan_columns!(),
                " FROM plans WHERE partner_id = $1 AND ($2 OR archived_at IS NULL) ORDER BY id"
            ))
            .bind(partner.get())
            .bind(archived)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn subscriptions_of(&self, partner: PartnerId, user: i64) -> StoreResult<Vec<SubscriptionRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(subscription_select!("s.partner_id = $1 AND s.user_id = $2 ORDER BY s.id"))
                .bind(partner.get())
                .bind(user)
                .fetch_all(pool)
                .await?
        }))
    }

    pub async fn partner_payments(&self, partner: PartnerId) -> StoreResult<Option<PartnerPaymentsRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT partner_id, provider, secret_key, webhook_secret, updated_at FROM partner_payments WHERE partner_id = $1",
            )
            .bind(partner.get())
            .fetch_optional(pool)
            .await?
        }))
    }
}

/// Marks a free (amount 0) open invoice paid; nothing is charged for it.
pub async fn mark_free_invoice_paid(tx: &mut Tx<'_>, invoice: i64, now: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE invoices SET status = 'paid', paid_at = $1 WHERE id = $2 AND status = 'open' AND amount_due = 0",
        )
        .bind(now)
        .bind(invoice)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

pub async fn user_public_id_in(tx: &mut Tx<'_>, user: i64) -> StoreResult<Option<String>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT public_id FROM users WHERE id = $1").bind(user).fetch_optional(conn).await?
    }))
}

/// The row id of the partner's user `public_id`, read in the open write.
pub async fn user_row_in(tx: &mut Tx<'_>, partner: i64, public_id: &str) -> StoreResult<Option<i64>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT id FROM users WHERE partner_id = $1 AND public_id = $2")
            .bind(partner)
            .bind(public_id)
            .fetch_optional(conn)
            .await?
    }))
}

impl Store {
    /// The row id of the partner's user `public_id`.
    pub async fn user_row_id(&self, partner: PartnerId, public_id: &str) -> StoreResult<Option<i64>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT id FROM users WHERE partner_id = $1 AND public_id = $2")
                .bind(partner.get())
                .bind(public_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The subscription's invoice of `period`, if it has one.
    pub async fn current_invoice(&self, subscription: i64, period: i64) -> StoreResult<Option<InvoiceRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(invoice_select!("i.subscription_id = $1 AND i.period = $2"))
                .bind(subscription)
                .bind(period)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The user's invoice `public_id`.
    pub async fn invoice_row(
        &self,
        partner: PartnerId,
        user: i64,
        public_id: &str,
    ) -> StoreResult<Option<InvoiceRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(invoice_select!("i.partner_id = $1 AND i.user_id = $2 AND i.public_id = $3"))
                .bind(partner.get())
                .bind(user)
                .bind(public_id)
                .fetch_optional(pool)
                .await?
        }))
    }
}

/// Restarts a subscription's periods from its new anchor (a first payment made late), with its
/// current invoice's period to match.
pub async fn restart_periods(tx: &mut Tx<'_>, s: &SubscriptionRecord, invoice: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query("UPDATE subscriptions SET anchor_at = $1, period_start = $2, period_end = $3 WHERE id = $4")
            .bind(s.anchor_at)
            .bind(s.period_start)
            .bind(s.period_end)
            .bind(s.id)
            .execute(&mut *conn)
            .await
            .map(drop)?
    });
    on_tx!(tx, |conn| {
        sqlx::query("UPDATE invoices SET period_start = $1, period_end = $2 WHERE id = $3")
            .bind(s.period_start)
            .bind(s.period_end)
            .bind(invoice)
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}

impl Store {
    /// The user's customer at the payment provider.
    pub async fn customer_of(&self, user: i64) -> StoreResult<Option<CustomerRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT user_id, provider, customer_id, payment_method FROM payment_customers WHERE user_id = $1",
            )
            .bind(user)
            .fetch_optional(pool)
            .await?
        }))
    }
}

impl Store {
    /// An invoice's ledger, oldest first.
    pub async fn ledger_of(&self, invoice: i64) -> StoreResult<Vec<LedgerRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                ledger_columns!(),
                " FROM ledger_entries WHERE invoice_id = $1 ORDER BY id"
            ))
            .bind(invoice)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn invoice_by_id(&self, invoice: i64) -> StoreResult<Option<InvoiceRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(invoice_select!("i.id = $1")).bind(invoice).fetch_optional(pool).await?
        }))
    }
}
