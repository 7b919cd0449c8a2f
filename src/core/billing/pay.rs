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
