//! Paying an invoice, renewing subscriptions, and the provider's webhooks: the use cases that
//! call the payment provider. Each is a few writes around the call (no write waits on the
//! network): claim the attempt, charge with the attempt's idempotency key, record the outcome.

use serde::Serialize;

use super::*;

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
    let started = std::time::Instant::now();
    // Two rounds at most: the first may finish an attempt a crashed payer left (with its own
    // method and key) before this payer's own attempt. Each claim is timed when it is made.
    for _ in 0..2 {
        let now = now.saturating_add(elapsed_ms(started));
        match claim(store, partner, owner, invoice, method, payer.lease_ms, now).await? {
            Claim::Done(paid) => return Ok(*paid),
            Claim::Busy => {
                // A payment waiting on the customer (3-D Secure) is replaced: canceled at the
                // provider (or, if the customer finished it meanwhile, taken), then a new attempt.
                if !replace_waiting(store, payer.provider, partner, owner, invoice, now).await? {
                    wait_for_charge(store, partner, owner, invoice, payer.lease_ms).await?;
                }
                continue;
            }
            Claim::Attempt(attempt) => {
                let finished_other = attempt.method != method || attempt.off_session;
                let outcome = charge(store, payer.provider, &attempt, now).await?;
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
    /// Resent exactly as first sent: the same key with other parameters is an error at Stripe.
    off_session: bool,
    customer: Option<CustomerRecord>,
    user_public_id: String,
}

fn elapsed_ms(since: std::time::Instant) -> i64 {
    i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX)
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
                let Some(claimed) =
                    repo::claim_charge(&mut tx, record.id, &method, false, now.saturating_add(lease_ms), now).await?
                else {
                    return Ok(Claim::Busy);
                };
                let customer = repo::customer_in(&mut tx, owner).await?;
                let user_public_id = user_public_id(&mut tx, owner).await?;
                let attempt = Attempt {
                    invoice: record,
                    attempt: claimed.attempt,
                    method: claimed.method,
                    off_session: claimed.off_session,
                    customer,
                    user_public_id,
                };
                Ok(Claim::Attempt(Box::new(attempt)))
            })
        })
        .await
}

/// Ends the invoice's attempt that waits on the customer, if it has one: canceled at the
/// provider and recorded as a failure, or, when the customer finished it meanwhile, its money
/// taken. False when no attempt was waiting.
async fn replace_waiting(
    store: &Store,
    provider: &Provider,
    partner: PartnerId,
    owner: i64,
    invoice: &str,
    now: i64,
) -> Result<bool, BillingError> {
    let record = store.invoice_row(partner, owner, invoice).await?.ok_or(BillingError::NotFound("invoice"))?;
    let (Some(number), Some(reference)) = (record.charging_attempt, record.charging_ref.clone()) else {
        return Ok(false);
    };
    let key = format!("onboard-{}-attempt-{number}-cancel", record.public_id);
    let canceled = provider.cancel(&reference, &key).await?;
    let customer = store.customer_of(record.user_id).await?.map(|c| c.customer_id).unwrap_or_default();
    let method = record.charging_method.clone().unwrap_or_default();
    let provider = provider.name();
    store
        .write(move |mut tx| {
            boxed(async move {
                repo::lock_subscription(&mut tx, record.subscription_id).await?;
                let money =
                    Money { provider, customer: &customer, method: &method, off_session: record.charging_off_session };
                match canceled {
                    Canceled::AlreadySucceeded => {
                        take_money(&mut tx, &record, Some(number), &reference, &money, now).await?;
                    }
                    Canceled::Canceled => {
                        let failure = Failure {
                            reference: Some(&reference),
                            code: "payment_intent_canceled",
                            decline_code: None,
                            message: "Replaced by another payment before the customer finished it.",
                        };
                        record_failure(&mut tx, &record, number, &failure, &money, now).await?;
                    }
                }
                Ok::<_, BillingError>(())
            })
        })
        .await?;
    Ok(true)
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
    let record = store.invoice_row(partner, owner, invoice).await?.ok_or(BillingError::NotFound("invoice"))?;
    Ok(Invoice::of(&record, &store.ledger_of(record.id).await?)?)
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
async fn charge(store: &Store, provider: &Provider, attempt: &Attempt, now: i64) -> Result<Paid, BillingError> {
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
        off_session: attempt.off_session,
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
    record_outcome(store, provider.name(), attempt, &customer, outcome, now).await
}

/// Keeps the attempt in flight with no holder (its outcome unknown).
async fn release(store: &Store, invoice: i64, attempt: i64) -> Result<(), BillingError> {
    store
        .write(move |mut tx| boxed(async move { repo::hold_charge(&mut tx, invoice, attempt, None, None).await }))
        .await?;
    Ok(())
}

/// Records a charge's outcome: the ledger entry, the invoice, the subscription, the saved
/// method, the dunning step and the events, in one write. `Err(text)` is a request the provider
/// refused.
async fn record_outcome(
    store: &Store,
    provider: &'static str,
    attempt: &Attempt,
    customer: &str,
    outcome: Result<ChargeOutcome, String>,
    now: i64,
) -> Result<Paid, BillingError> {
    let invoice = attempt.invoice.clone();
    let (number, method, customer, off_session) =
        (attempt.attempt, attempt.method.clone(), customer.to_owned(), attempt.off_session);
    let rejected = outcome.as_ref().err().cloned();
    let result = store
        .write(move |mut tx| {
            boxed(async move {
                // The subscription first, then the invoice: the order every write takes them in.
                repo::lock_subscription(&mut tx, invoice.subscription_id).await?;
                let money = Money { provider, customer: &customer, method: &method, off_session };
                let (reference, code, decline_code, message) = match &outcome {
                    Ok(ChargeOutcome::Pending { reference, client_secret, status }) => {
                        repo::hold_charge(&mut tx, invoice.id, number, Some(now + PENDING_HOLD_MS), Some(reference))
                            .await?;
                        return Ok(Paid::Pending {
                            invoice: current_view(&mut tx, invoice.id).await?,
                            client_secret: client_secret.clone(),
                            status: status.clone(),
                            reference: reference.clone(),
                        });
                    }
                    Ok(ChargeOutcome::Succeeded { reference }) => {
                        return Ok(take_money(&mut tx, &invoice, Some(number), reference, &money, now).await?);
                    }
                    Ok(ChargeOutcome::Declined { reference, code, decline_code, message }) => {
                        (reference.as_deref(), code.as_str(), decline_code.as_deref(), message.as_str())
                    }
                    Err(text) => (None, "provider_rejected", None, text.as_str()),
                };
                let failure = Failure { reference, code, decline_code, message };
                Ok::<_, BillingError>(record_failure(&mut tx, &invoice, number, &failure, &money, now).await?)
            })
        })
        .await?;
    match rejected {
        Some(text) => Err(ProviderError::Rejected(text).into()),
        None => Ok(result),
    }
}

/// How long an attempt waiting on the customer (3-D Secure) or the bank holds the invoice.
const PENDING_HOLD_MS: i64 = 24 * 3_600_000;

/// Who paid with what, for the ledger and the saved method.
struct Money<'a> {
    provider: &'static str,
    customer: &'a str,
    method: &'a str,
    off_session: bool,
}

struct Failure<'a> {
    reference: Option<&'a str>,
    code: &'a str,
    decline_code: Option<&'a str>,
    message: &'a str,
}

async fn current_view(tx: &mut Tx<'_>, invoice: i64) -> StoreResult<Invoice> {
    let record = repo::invoice_in(tx, invoice).await?.ok_or_else(|| corrupt("invoice"))?;
    invoice_view(tx, &record).await
}

fn view_outcome(view: Invoice) -> Paid {
    if view.status == InvoiceStatus::Paid { Paid::Paid(view) } else { Paid::Declined(view) }
}

/// Money the provider took (`reference`), in the open write: it pays the invoice when the
/// invoice is open (through attempt `attempt` when that is still the one in flight, else
/// whatever is in flight ends), and is never dropped: money no open invoice can take (a second
/// charge) is kept as `unapplied` and logged for an operator to refund. Idempotent per
/// `reference`.
async fn take_money(
    tx: &mut Tx<'_>,
    invoice: &InvoiceRecord,
    attempt: Option<i64>,
    reference: &str,
    money: &Money<'_>,
    now: i64,
) -> StoreResult<Paid> {
    if repo::money_recorded(tx, invoice.partner_id, reference).await? {
        return Ok(view_outcome(current_view(tx, invoice.id).await?));
    }
    let settled = match attempt {
        Some(n) => repo::settle_charge(tx, invoice.id, n, true, now).await?,
        None => false,
    };
    let applied = settled || repo::mark_paid(tx, invoice.id, now).await?;
    let ledger = repo::ledger_of_in(tx, invoice.id).await?;
    let number = if applied {
        attempt.unwrap_or(invoice.attempts)
    } else {
        // Any number not taken by an entry of this kind: unapplied money is rare and each is its own.
        i64::try_from(ledger.len()).unwrap_or(i64::MAX).saturating_add(1_000)
    };
    let payment = PaymentId::generate();
    let kind = if applied { LedgerKind::Charge } else { LedgerKind::Unapplied };
    let entry = NewLedgerEntry {
        public_id: payment.as_str(),
        partner_id: invoice.partner_id,
        user_id: invoice.user_id,
        invoice_id: invoice.id,
        kind: kind.as_str(),
        amount_minor: invoice.amount_due,
        currency: &invoice.currency,
        attempt: number,
        provider: money.provider,
        provider_ref: Some(reference),
        payment_method: Some(money.method),
        failure_code: None,
        decline_code: None,
        failure_message: None,
        off_session: money.off_session,
    };
    repo::append_ledger(tx, &entry, now).await?;
    if applied {
        paid_effects(tx, invoice, money, now).await?;
    } else {
        tracing::error!(invoice = %invoice.public_id, payment = %payment, reference,
            "the provider took money for an invoice that is no longer open: recorded as unapplied, refund it");
    }
    Ok(view_outcome(current_view(tx, invoice.id).await?))
}

/// A declined (or refused) attempt, in the open write: the ledger entry, the invoice released,
/// the partner's event, and for a renewal the dunning step (`past_due`, or `canceled` with the
/// invoice void after the last retry). Nothing when the attempt is no longer the one in flight.
async fn record_failure(
    tx: &mut Tx<'_>,
    invoice: &InvoiceRecord,
    attempt: i64,
    failure: &Failure<'_>,
    money: &Money<'_>,
    now: i64,
) -> StoreResult<Paid> {
    if !repo::settle_charge(tx, invoice.id, attempt, false, now).await? {
        return Ok(view_outcome(current_view(tx, invoice.id).await?));
    }
    let payment = PaymentId::generate();
    let entry = NewLedgerEntry {
        public_id: payment.as_str(),
        partner_id: invoice.partner_id,
        user_id: invoice.user_id,
        invoice_id: invoice.id,
        kind: LedgerKind::Failure.as_str(),
        amount_minor: 0,
        currency: &invoice.currency,
        attempt,
        provider: money.provider,
        provider_ref: failure.reference,
        payment_method: Some(money.method),
        failure_code: Some(failure.code),
        decline_code: failure.decline_code,
        failure_message: Some(failure.message),
        off_session: money.off_session,
    };
    repo::append_ledger(tx, &entry, now).await?;
    let user = user_public_id(tx, invoice.user_id).await?;
    let data = json!({"userId": user, "invoiceId": invoice.public_id, "subscriptionId": invoice.subscription_public_id,
                      "amount": invoice.amount_due, "currency": invoice.currency, "failureCode": failure.code});
    emit(tx, invoice.partner_id, EventType::InvoicePaymentFailed, invoice.user_id, data, now).await?;
    if money.off_session {
        let Some(mut s) = repo::lock_subscription(tx, invoice.subscription_id).await? else {
            return Ok(Paid::Declined(current_view(tx, invoice.id).await?));
        };
        let failures = usize::try_from(repo::renewal_failures(tx, invoice.id).await?).unwrap_or(usize::MAX);
        if failures > crate::domain::billing::RENEWAL_RETRY_DAYS.len() {
            // The last retry failed: the subscription ends, unpaid.
            repo::void_invoice(tx, invoice.id, now).await?;
            move_subscription(tx, &mut s, SubscriptionStatus::Canceled, now).await?;
        } else if s.status == SubscriptionStatus::Active.as_str() {
            move_subscription(tx, &mut s, SubscriptionStatus::PastDue, now).await?;
        }
    }
    Ok(Paid::Declined(current_view(tx, invoice.id).await?))
}

/// What a paid invoice changes besides the ledger: the method renewals will charge, the
/// subscription (`active`; a first payment starts the periods from now, so a subscription paid
/// late is not billed for the months it waited), and the partner's event.
async fn paid_effects(tx: &mut Tx<'_>, invoice: &InvoiceRecord, money: &Money<'_>, now: i64) -> StoreResult<()> {
    let user = user_public_id(tx, invoice.user_id).await?;
    let data = json!({"userId": user, "invoiceId": invoice.public_id, "subscriptionId": invoice.subscription_public_id,
                      "amount": invoice.amount_due, "currency": invoice.currency, "failureCode": null});
    emit(tx, invoice.partner_id, EventType::InvoicePaid, invoice.user_id, data, now).await?;
    if !money.customer.is_empty() {
        let saved = CustomerRecord {
            user_id: invoice.user_id,
            provider: money.provider.to_owned(),
            customer_id: money.customer.to_owned(),
            payment_method: Some(money.method.to_owned()),
        };
        repo::save_customer(tx, invoice.partner_id, &saved, now).await?;
    }
    let Some(mut s) = repo::lock_subscription(tx, invoice.subscription_id).await? else { return Ok(()) };
    if s.period != invoice.period {
        return Ok(());
    }
    if s.status == SubscriptionStatus::Incomplete.as_str() {
        let interval = Interval::parse(&s.interval).ok_or_else(|| corrupt("interval"))?;
        s.anchor_at = now;
        s.period_start = now;
        s.period_end = period_end(now, interval, 1).ok_or_else(|| corrupt("period"))?;
        repo::restart_periods(tx, &s, invoice.id).await?;
        move_subscription(tx, &mut s, SubscriptionStatus::Active, now).await?;
    } else if s.status == SubscriptionStatus::PastDue.as_str() {
        move_subscription(tx, &mut s, SubscriptionStatus::Active, now).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Renewals

/// A subscription never paid expires this long after it was started (its invoice void), as
/// Stripe's `incomplete` subscriptions do after 23 hours.
pub const INCOMPLETE_EXPIRES_MS: i64 = 23 * 3_600_000;

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
    let incomplete_before = now.saturating_sub(INCOMPLETE_EXPIRES_MS);
    let work = store
        .write(move |mut tx| boxed(async move { repo::renewal_work(&mut tx, now, incomplete_before, 500).await }))
        .await?;
    let mut report = RenewalReport::default();
    let started = std::time::Instant::now();
    for id in work {
        // Each claim is timed when it is made: a long sweep must not write leases already past.
        let now = now.saturating_add(elapsed_ms(started));
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
                let renewed = if s.status == SubscriptionStatus::Incomplete.as_str() {
                    // An attempt whose answer was lost is finished (same key) before the
                    // subscription may expire: the provider may have taken the money.
                    let lost = repo::invoice_of_period(&mut tx, s.id, s.period).await?.is_some_and(|i| {
                        i.status == "open" && i.charging_attempt.is_some() && i.charging_until.is_none()
                    });
                    if !lost {
                        return expire_incomplete(&mut tx, &mut s, now).await;
                    }
                    false
                } else {
                    roll_periods(&mut tx, &mut s, now).await?
                };
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
                    Some(SubscriptionStatus::Active | SubscriptionStatus::Incomplete) => true,
                    Some(SubscriptionStatus::PastDue) => {
                        // Only declined renewals count: the customer's own tries do not shorten
                        // the schedule.
                        let done = usize::try_from(repo::renewal_failures(&mut tx, invoice.id).await?).unwrap_or(0);
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
                let Some(claimed) =
                    repo::claim_charge(&mut tx, invoice.id, &method, true, now.saturating_add(lease), now).await?
                else {
                    return Ok(Due::Nothing);
                };
                let user_public_id = user_public_id(&mut tx, s.user_id).await?;
                let attempt = Attempt {
                    invoice,
                    attempt: claimed.attempt,
                    method: claimed.method,
                    off_session: claimed.off_session,
                    customer,
                    user_public_id,
                };
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
    let provider = match provider_of(store, payments, &partner).await {
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
        record_outcome(store, provider.name(), &attempt, "", Ok(outcome), now).await?
    } else {
        match charge(store, &provider, &attempt, now).await {
            // Refused by the provider (a revoked key, say): recorded as a declined renewal, so
            // the dunning runs its course instead of retrying at every sweep.
            Err(BillingError::Provider(ProviderError::Rejected(_))) => {
                Paid::Declined(read_invoice_by_id(store, attempt.invoice.id).await?)
            }
            other => other?,
        }
    };
    match paid {
        Paid::Paid(_) => report.charged += 1,
        Paid::Pending { .. } => {}
        Paid::Declined(view) => {
            report.failed += 1;
            report.canceled += usize::from(view.status == InvoiceStatus::Void);
        }
    }
    Ok(())
}

/// An `incomplete` subscription past its expiry: canceled, its invoice void (unless a payment of
/// it is under way: then the next sweep looks again).
async fn expire_incomplete(tx: &mut Tx<'_>, s: &mut SubscriptionRecord, now: i64) -> Result<Due, BillingError> {
    if s.created_at > now.saturating_sub(INCOMPLETE_EXPIRES_MS) {
        return Ok(Due::Nothing);
    }
    if let Some(invoice) = repo::invoice_of_period(tx, s.id, s.period).await?
        && invoice.status == "open"
        && !repo::void_invoice(tx, invoice.id, now).await?
    {
        return Ok(Due::Nothing);
    }
    move_subscription(tx, s, SubscriptionStatus::Canceled, now).await?;
    Ok(Due::Canceled)
}

async fn read_invoice_by_id(store: &Store, invoice: i64) -> Result<Invoice, BillingError> {
    let record = store.invoice_by_id(invoice).await?.ok_or_else(|| corrupt("invoice"))?;
    Ok(Invoice::of(&record, &store.ledger_of(record.id).await?)?)
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
    /// The invoice the PaymentIntent was made for (its `metadata[onboard_invoice_id]`).
    pub invoice: Option<String>,
    /// For `payment_intent.payment_failed`: the error's code, decline code and message.
    pub failure: Option<(String, Option<String>, String)>,
    pub raw_body: String,
}

/// What an event did: `settled` (money taken, or an attempt waiting on the customer or the bank
/// ended), `duplicate` (seen before), `ignored` (nothing here waits on that payment, or a type
/// not acted on). The event is recorded and applied in one write: a failure leaves neither, and
/// Stripe's redelivery applies it.
pub async fn apply_intent_event(store: &Store, event: IntentEvent, now: i64) -> Result<&'static str, BillingError> {
    store
        .write(move |mut tx| {
            boxed(async move {
                let partner = event.partner.get();
                let effect = intent_effect(&mut tx, &event, now).await?;
                let (id, kind, raw) = (&event.event_id, &event.event_type, &event.raw_body);
                if !repo::record_payment_event(&mut tx, partner, id, kind, raw, effect, now).await? {
                    // Seen before: this write's effect is rolled back with the error-free answer
                    // below only if nothing changed; a duplicate found after applying is undone.
                    return Err(BillingError::Duplicate);
                }
                Ok(effect)
            })
        })
        .await
        .or_else(|err| match err {
            BillingError::Duplicate => Ok("duplicate"),
            other => Err(other),
        })
}

async fn intent_effect(tx: &mut Tx<'_>, event: &IntentEvent, now: i64) -> Result<&'static str, BillingError> {
    let partner = event.partner.get();
    // The invoice whose attempt waits on this payment, else the one the payment was made for.
    let invoice = match repo::invoice_charging(tx, partner, &event.intent).await? {
        Some(invoice) => Some(invoice),
        None => match &event.invoice {
            Some(id) => repo::invoice_of_partner(tx, partner, id).await?,
            None => None,
        },
    };
    let Some(invoice) = invoice else { return Ok("ignored") };
    repo::lock_subscription(tx, invoice.subscription_id).await?;
    let waiting = invoice.charging_ref.as_deref() == Some(event.intent.as_str());
    let customer = repo::customer_in(tx, invoice.user_id).await?.map(|c| c.customer_id).unwrap_or_default();
    let method = invoice.charging_method.clone().unwrap_or_default();
    let money =
        Money { provider: "stripe", customer: &customer, method: &method, off_session: invoice.charging_off_session };
    match event.event_type.as_str() {
        "payment_intent.succeeded" => {
            let attempt = if waiting { invoice.charging_attempt } else { None };
            take_money(tx, &invoice, attempt, &event.intent, &money, now).await?;
            Ok("settled")
        }
        "payment_intent.payment_failed" if waiting => {
            let (code, decline_code, message) =
                event.failure.clone().unwrap_or_else(|| ("card_declined".into(), None, "The payment failed.".into()));
            let failure = Failure {
                reference: Some(&event.intent),
                code: &code,
                decline_code: decline_code.as_deref(),
                message: &message,
            };
            let attempt = invoice.charging_attempt.ok_or_else(|| corrupt("attempt"))?;
            record_failure(tx, &invoice, attempt, &failure, &money, now).await?;
            Ok("settled")
        }
        _ => Ok("ignored"),
    }
}
