//! Partner webhooks: a partner's endpoints (create, change, delete, rotate the secret, send a
//! test), replays, and the record of each delivery attempt. Every use case is one write; the
//! partner's changes to its endpoints are audited in it (actor `partner:{id}`).
//!
//! Events themselves are written where their change is: by the database's triggers for user
//! inserts and CIP moves, by `kyc_reviewed` inside the KYC write, by `send_test` here. The
//! fan-out trigger queues one `webhook.deliver` job per subscribed, enabled endpoint.

use serde::Serialize;
use serde_json::json;

use super::audit::{self, Action};
use crate::domain::kyc::Review;
use crate::domain::webhook::{
    AddressPolicy, EndpointUrl, EventFilter, EventType, InvalidFilter, InvalidUrl, SigningSecret,
};
use crate::domain::{Environment, Partner};
use crate::kek::{Kek, KekError};
use crate::mail::{MAIL_JOB, Outgoing};
use crate::store::webhooks::{self as repo, Delivered, DeliveryRef, EndpointRecord, NewAttempt, NewEndpoint};
use crate::store::{ClaimedJob, NewJob, ProspectRecord, Store, StoreError, StoreResult, Tx, boxed, jobs};

/// How long a rotated-out secret keeps signing beside the new one.
pub const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Url(#[from] InvalidUrl),
    #[error(transparent)]
    Filter(#[from] InvalidFilter),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("no such webhook endpoint")]
    NoEndpoint,
    #[error("no such event")]
    NoEvent,
    #[error("a stored secret cannot be opened")]
    Sealed(#[from] KekError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An endpoint as the partner sees it (never its secret, after creation).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// `ep_…`
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    /// The subscribed types; `["*"]` for every type, present and future.
    pub events: Vec<&'static str>,
    pub enabled: bool,
    /// Why it was turned off: by the partner, a 410 Gone, or days of failures.
    pub disabled_reason: Option<String>,
    /// Until when the previous secret still signs beside the current one (after a rotation).
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Endpoint {
    pub fn of(r: &EndpointRecord, now: i64) -> Self {
        let until = r.previous_secret_until.filter(|until| *until > now);
        Self {
            id: r.public_id.clone(),
            url: r.url.clone(),
            description: r.description.clone(),
            events: EventFilter::from_column(r.events.as_deref()).names().unwrap_or_else(|| vec!["*"]),
            enabled: r.enabled,
            disabled_reason: r.disabled_reason.clone(),
            previous_secret_expires_at: until.map(crate::domain::rfc3339),
            created_at: crate::domain::rfc3339(r.created_at),
            updated_at: crate::domain::rfc3339(r.updated_at),
        }
    }
}

/// `events` as sent: absent or `["*"]` is every type.
pub fn parse_filter(events: Option<&[String]>) -> Result<EventFilter, InvalidFilter> {
    match events {
        Some([star]) if star == "*" => Ok(EventFilter::All),
        other => EventFilter::parse(other),
    }
}

fn parse_description(raw: Option<&str>) -> Result<Option<String>, WebhookError> {
    let Some(text) = raw.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    if text.chars().count() > 500 || text.chars().any(char::is_control) {
        return Err(WebhookError::Invalid("`description` must be at most 500 printable characters"));
    }
    Ok(Some(text.to_owned()))
}

/// The AAD an endpoint's secrets are sealed under: bound to the endpoint (both of its secret
/// columns, so a rotation moves the value without resealing it).
pub fn secret_aad(endpoint: &str) -> String {
    format!("webhook_endpoints.secret:{endpoint}")
}

fn actor(partner: &Partner) -> String {
    format!("partner:{}", partner.id)
}

/// A new endpoint: what to show, and its secret (shown this once).
pub struct Created {
    pub endpoint: Endpoint,
    pub secret: SigningSecret,
}

pub struct NewEndpointRequest<'a> {
    pub url: &'a str,
    pub events: Option<&'a [String]>,
    pub description: Option<&'a str>,
}

pub async fn create_endpoint(
    store: &Store,
    kek: &Kek,
    partner: &Partner,
    request: NewEndpointRequest<'_>,
    allow_loopback: bool,
    now: i64,
) -> Result<Created, WebhookError> {
    let policy = AddressPolicy::for_partner(partner.environment, allow_loopback);
    let url = EndpointUrl::parse(request.url, partner.environment)?.allowed(policy)?;
    let filter = parse_filter(request.events)?;
    let description = parse_description(request.description)?;
    let secret = SigningSecret::generate();
    let public_id = format!("ep_{}", uuid::Uuid::new_v4().simple());
    let new = NewEndpoint {
        secret: kek.seal(&secret_aad(&public_id), secret.expose().as_bytes()),
        public_id,
        partner_id: partner.id.get(),
        url: url.as_str().to_owned(),
        description,
        events: filter.to_column(),
        now,
    };
    let actor = actor(partner);
    let record = store
        .write(move |mut tx| {
            boxed(async move {
                let record = repo::insert_endpoint(&mut tx, &new).await?;
                let detail = json!({"url": record.url, "events": record.events});
                audit::record(&mut tx, &actor, Action::WebhookEndpointCreate, Some(&record.public_id), detail, now)
                    .await?;
                Ok::<_, WebhookError>(record)
            })
        })
        .await?;
    Ok(Created { endpoint: Endpoint::of(&record, now), secret })
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    /// `Some(None)`: every type.
    pub events: Option<Option<Vec<String>>>,
    /// `Some(None)`: no description.
    pub description: Option<Option<String>>,
    /// Re-enabling clears the reason it was disabled and its run of failures.
    pub enabled: Option<bool>,
}

pub async fn update_endpoint(
    store: &Store,
    partner: &Partner,
    id: &str,
    patch: EndpointPatch,
    allow_loopback: bool,
    now: i64,
) -> Result<Endpoint, WebhookError> {
    let policy = AddressPolicy::for_partner(partner.environment, allow_loopback);
    let url = patch
        .url
        .as_deref()
        .map(|u| EndpointUrl::parse(u, partner.environment).and_then(|url| url.allowed(policy)))
        .transpose()?;
    let filter = patch.events.as_ref().map(|e| parse_filter(e.as_deref())).transpose()?;
    let description = patch.description.as_ref().map(|d| parse_description(d.as_deref())).transpose()?;
    let (partner_id, id, actor) = (partner.id.get(), id.to_owned(), actor(partner));
    let record = store
        .write(move |mut tx| {
            boxed(async move {
                let mut record = repo::endpoint_in(&mut tx, partner_id, &id).await?.ok_or(WebhookError::NoEndpoint)?;
                if let Some(url) = &url {
                    record.url = url.as_str().to_owned();
                }
                if let Some(filter) = &filter {
                    record.events = filter.to_column();
                }
                if let Some(description) = description {
                    record.description = description;
                }
                match patch.enabled {
                    Some(true) if !record.enabled => {
                        record.enabled = true;
                        record.disabled_reason = None;
                        record.failing_since = None;
                    }
                    Some(false) if record.enabled => {
                        record.enabled = false;
                        record.disabled_reason = Some("disabled by the partner".into());
                    }
                    _ => {}
                }
                repo::update_endpoint(&mut tx, &record, now).await?;
                record.updated_at = now;
                let detail = json!({"url": record.url, "events": record.events, "enabled": record.enabled});
                audit::record(&mut tx, &actor, Action::WebhookEndpointUpdate, Some(&record.public_id), detail, now)
                    .await?;
                Ok::<_, WebhookError>(record)
            })
        })
        .await?;
    Ok(Endpoint::of(&record, now))
}

pub async fn delete_endpoint(store: &Store, partner: &Partner, id: &str, now: i64) -> Result<(), WebhookError> {
    let (partner_id, id, actor) = (partner.id.get(), id.to_owned(), actor(partner));
    store
        .write(move |mut tx| {
            boxed(async move {
                let record = repo::endpoint_in(&mut tx, partner_id, &id).await?.ok_or(WebhookError::NoEndpoint)?;
                repo::delete_endpoint(&mut tx, record.id, now).await?;
                let detail = json!({"url": record.url});
                audit::record(&mut tx, &actor, Action::WebhookEndpointDelete, Some(&record.public_id), detail, now)
                    .await?;
                Ok(())
            })
        })
        .await
}

/// A new secret for the endpoint; the current one keeps signing beside it for 24 hours (a
/// rotation within those hours drops the oldest).
pub async fn rotate_secret(
    store: &Store,
    kek: &Kek,
    partner: &Partner,
    id: &str,
    now: i64,
) -> Result<(Endpoint, SigningSecret), WebhookError> {
    let secret = SigningSecret::generate();
    let sealed = kek.seal(&secret_aad(id), secret.expose().as_bytes());
    let (partner_id, id, actor) = (partner.id.get(), id.to_owned(), actor(partner));
    let record = store
        .write(move |mut tx| {
            boxed(async move {
                let mut record = repo::endpoint_in(&mut tx, partner_id, &id).await?.ok_or(WebhookError::NoEndpoint)?;
                record.previous_secret = Some(std::mem::replace(&mut record.secret, sealed));
                record.previous_secret_until = Some(now + ROTATION_OVERLAP_MS);
                repo::update_endpoint(&mut tx, &record, now).await?;
                record.updated_at = now;
                let detail = json!({"previousSecretUntil": record.previous_secret_until});
                audit::record(&mut tx, &actor, Action::WebhookSecretRotate, Some(&record.public_id), detail, now)
                    .await?;
                Ok::<_, WebhookError>(record)
            })
        })
        .await?;
    Ok((Endpoint::of(&record, now), secret))
}

/// Queues a `webhook.test` event to this endpoint alone (enabled or not: testing is how a
/// partner checks a fix before re-enabling); its event id.
pub async fn send_test(store: &Store, partner: &Partner, id: &str, now: i64) -> Result<String, WebhookError> {
    let (partner_id, id) = (partner.id.get(), id.to_owned());
    store
        .write(move |mut tx| {
            boxed(async move {
                let record = repo::endpoint_in(&mut tx, partner_id, &id).await?.ok_or(WebhookError::NoEndpoint)?;
                let data = json!({"endpointId": record.public_id, "message": "A test event from Onboard."});
                let event =
                    repo::emit(&mut tx, partner_id, EventType::Test.as_str(), None, Some(record.id), &data, now)
                        .await?;
                if !record.enabled {
                    // The fan-out trigger skips disabled endpoints; a test goes anyway.
                    let (_, event_id) = event_row(&mut tx, partner_id, &event).await?;
                    repo::queue_delivery(
                        &mut tx,
                        partner_id,
                        DeliveryRef { event: event_id, endpoint: record.id },
                        now,
                    )
                    .await?;
                }
                Ok(event)
            })
        })
        .await
}

async fn event_row(tx: &mut Tx<'_>, partner: i64, public_id: &str) -> Result<(String, i64), WebhookError> {
    let event = repo::event_in(tx, partner, public_id).await?.ok_or(WebhookError::NoEvent)?;
    Ok((event.event_type, event.id))
}

/// Delivers an event again: to one endpoint, or to every enabled endpoint subscribed to its
/// type. The `webhook-id` is the event's, as on the first delivery. How many were queued.
pub async fn replay_event(
    store: &Store,
    partner: &Partner,
    event: &str,
    endpoint: Option<&str>,
    now: i64,
) -> Result<usize, WebhookError> {
    let (partner_id, event, endpoint) = (partner.id.get(), event.to_owned(), endpoint.map(str::to_owned));
    store
        .write(move |mut tx| {
            boxed(async move {
                let (event_type, event_id) = event_row(&mut tx, partner_id, &event).await?;
                let targets = match &endpoint {
                    Some(id) => {
                        vec![repo::endpoint_in(&mut tx, partner_id, id).await?.ok_or(WebhookError::NoEndpoint)?.id]
                    }
                    None => repo::subscribed_in(&mut tx, partner_id, &event_type).await?,
                };
                for target in &targets {
                    repo::queue_delivery(&mut tx, partner_id, DeliveryRef { event: event_id, endpoint: *target }, now)
                        .await?;
                }
                Ok(targets.len())
            })
        })
        .await
}

/// Queues again every delivery of the partner's that was given up on (dead-lettered), of events
/// since `since`; how many.
pub async fn replay_failed(store: &Store, partner: &Partner, since: i64, now: i64) -> StoreResult<u64> {
    let partner_id = partner.id.get();
    store.write(move |mut tx| boxed(async move { repo::requeue_failed(&mut tx, partner_id, since, now).await })).await
}

/// `kyc.reviewed`, in the KYC write that records the review: the answer and the provider's
/// labels (no document data, no reviewer comments).
pub(crate) async fn kyc_reviewed(tx: &mut Tx<'_>, user: &ProspectRecord, review: &Review, now: i64) -> StoreResult<()> {
    let mut data = json!({"userId": user.public_id, "reviewAnswer": review.answer.as_str()});
    if let Some(reject) = review.reject_type {
        data["rejectType"] = json!(reject.as_str());
    }
    if !review.labels.is_empty() {
        data["rejectLabels"] = json!(review.labels);
    }
    repo::emit(tx, user.partner_id, EventType::KycReviewed.as_str(), Some(user.id), None, &data, now).await.map(drop)
}

/// What happened to one attempt, as the delivery worker saw it.
#[derive(Debug, Clone)]
pub enum Attempted {
    /// 2xx.
    Delivered { status: i64, latency_ms: i64 },
    /// 410 Gone: the receiver asks never to be called again.
    Gone { status: i64, latency_ms: i64, response: Option<String> },
    /// Any other answer, no answer, or an address refused; retried at `retry_at` (None: the
    /// schedule is used up, the delivery is dead).
    Failed {
        status: Option<i64>,
        latency_ms: i64,
        response: Option<String>,
        error: String,
        refused: bool,
        retry_at: Option<i64>,
    },
}

/// What recording an attempt did to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointChange {
    None,
    /// Turned off by this attempt (410, or failing since longer than allowed).
    Disabled,
}

/// Records an attempt and completes (or reschedules) its job in one write: an attempt is never
/// recorded for a job that lost its lease, nor the job finished without its attempt. An
/// endpoint failing since before `disable_before` is turned off.
pub async fn record_attempt(
    store: &Store,
    job: ClaimedJob,
    delivery: DeliveryRef,
    attempted: Attempted,
    disable_before: i64,
    now: i64,
) -> StoreResult<EndpointChange> {
    if let Attempted::Delivered { status, latency_ms } = attempted {
        // The common case has a path of its own, which the store batches (a delivered attempt
        // only clears the endpoint's failure, it never disables it).
        store.record_delivered(Delivered { job, delivery, status, latency_ms, at: now }).await?;
        return Ok(EndpointChange::None);
    }
    store
        .write(move |mut tx| {
            boxed(async move {
                let (result, status, latency_ms, response, error, next_at) = match &attempted {
                    Attempted::Delivered { status, latency_ms } => {
                        ("delivered", Some(*status), *latency_ms, None, None, None)
                    }
                    Attempted::Gone { status, latency_ms, response } => {
                        ("gone", Some(*status), *latency_ms, response.clone(), None, None)
                    }
                    Attempted::Failed { status, latency_ms, response, error, refused, retry_at } => (
                        if *refused { "refused" } else { "failed" },
                        *status,
                        *latency_ms,
                        response.clone(),
                        Some(error.clone()),
                        *retry_at,
                    ),
                };
                let kept = match &attempted {
                    Attempted::Delivered { .. } => jobs::complete(&mut tx, &job, false, now).await?,
                    Attempted::Gone { .. } => jobs::fail(&mut tx, &job, "410 Gone", true, now, now).await?,
                    Attempted::Failed { error, retry_at, .. } => {
                        jobs::fail(&mut tx, &job, error, retry_at.is_none(), retry_at.unwrap_or(now), now).await?
                    }
                };
                if !kept {
                    // Another worker holds this delivery now; it records its own attempt.
                    return Ok(EndpointChange::None);
                }
                let attempt = NewAttempt {
                    delivery,
                    attempt: job.attempts,
                    at: now,
                    result,
                    status,
                    latency_ms,
                    response,
                    error,
                    next_at,
                };
                let failing_since = repo::record_attempt(&mut tx, &attempt).await?;
                let reason = match (&attempted, failing_since) {
                    (Attempted::Gone { .. }, _) => Some("the endpoint answered 410 Gone".to_owned()),
                    (_, Some(since)) if since < disable_before => {
                        Some(format!("failing since {}", crate::domain::rfc3339(since)))
                    }
                    _ => None,
                };
                match reason {
                    Some(reason) if repo::disable(&mut tx, delivery.endpoint, &reason, now).await? => {
                        // The partner is told in the same write (an outbox row), when it gave an address.
                        if let Some((to, partner, endpoint, url)) =
                            repo::disabled_notice(&mut tx, delivery.endpoint).await?
                        {
                            let notice = Outgoing::WebhookEndpointDisabled { to, partner, endpoint, url, reason };
                            let payload = serde_json::to_value(notice).expect("messages serialise");
                            jobs::enqueue(&mut tx, &NewJob::new(MAIL_JOB, payload, now), now).await?;
                        }
                        Ok(EndpointChange::Disabled)
                    }
                    _ => Ok(EndpointChange::None),
                }
            })
        })
        .await
}

/// Ends a delivery that will not be attempted (its endpoint was disabled or deleted after the
/// event): dead-lettered, so that re-enabling and replaying failed deliveries sends it.
pub async fn skip_delivery(store: &Store, job: ClaimedJob, why: &str, now: i64) -> StoreResult<bool> {
    let why = why.to_owned();
    store.write(move |mut tx| boxed(async move { jobs::fail(&mut tx, &job, &why, true, now, now).await })).await
}

/// Events deleted per write by the retention sweep.
pub const PURGE_BATCH: i64 = 1_000;

/// Deletes every event created more than `keep_days` before `now`, with its attempts, a batch
/// per write; how many events. 0 days keeps them all.
pub async fn purge_events(store: &Store, keep_days: u64, now: i64) -> StoreResult<u64> {
    if keep_days == 0 {
        return Ok(0);
    }
    let before = now.saturating_sub(crate::domain::secs_to_ms(keep_days.saturating_mul(86_400)));
    let mut purged = 0;
    loop {
        let deleted = store
            .write(move |mut tx| boxed(async move { repo::purge_events(&mut tx, before, PURGE_BATCH).await }))
            .await?;
        purged += deleted;
        if deleted < PURGE_BATCH as u64 {
            return Ok(purged);
        }
        // Between batches, the writes that were waiting for the connection go first.
        tokio::task::yield_now().await;
    }
}

/// Hands a delivery back unattempted (this node already has enough in flight to its endpoint).
pub async fn defer_delivery(store: &Store, job: ClaimedJob, run_at: i64, now: i64) -> StoreResult<bool> {
    store.write(move |mut tx| boxed(async move { jobs::defer(&mut tx, &job, run_at, now).await })).await
}

/// The endpoint's signing secrets, current first: the previous one while its overlap lasts.
pub fn open_secrets(
    kek: &Kek,
    endpoint: &str,
    current: &[u8],
    previous: Option<(&[u8], i64)>,
    now: i64,
) -> Result<Vec<SigningSecret>, WebhookError> {
    let aad = secret_aad(endpoint);
    let open = |sealed: &[u8]| -> Result<SigningSecret, WebhookError> {
        let raw = kek.open_string(&aad, sealed)?;
        SigningSecret::parse(raw).ok_or(WebhookError::Invalid("a stored webhook secret is malformed"))
    };
    let mut secrets = vec![open(current)?];
    if let Some((sealed, _)) = previous.filter(|(_, until)| *until > now) {
        secrets.push(open(sealed)?);
    }
    Ok(secrets)
}

/// Whether `environment` is a live partner's (stricter address rules).
pub fn is_live(environment: &str) -> bool {
    environment == Environment::Live.as_str()
}
