//! Delivering partner webhooks: the `webhook.deliver` job. One attempt signs the event per
//! Standard Webhooks v1 (with every secret still valid), POSTs it with a 15-second limit and no
//! redirects, to an address the partner's policy allows (`guard`), and records the attempt and
//! the job's next step in one write (`core::webhooks::record_attempt`).
//!
//! Isolation: each node sends at most `per_endpoint_concurrency` requests to one endpoint at a
//! time; a delivery claimed beyond that waits briefly for a slot (`ENDPOINT_WAIT`, as many
//! waiting as there are slots), then is handed back unattempted for a second, so an endpoint
//! that never answers holds a few workers, never all of them. Order across deliveries is not
//! kept (documented): receivers order by the payload's `timestamp` and deduplicate on
//! `webhook-id`.

mod guard;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::core::webhooks::{self as usecase, Attempted, EndpointChange};
use crate::domain::webhook::{AddressPolicy, EventType, signature_header};
use crate::domain::{Environment, now_ms};
use crate::jobs::{JobOutcome, JobRegistry};
use crate::kek::Kek;
use crate::store::webhooks::{DELIVER_JOB, Delivery, DeliveryRef};
use crate::store::{ClaimedJob, Store};

pub use guard::Refused;

/// The retry schedule after the first attempt (Standard Webhooks' example): about three days
/// in all, then the delivery is dead-lettered. Its length plus one is the jobs' `max_attempts`
/// (the fan-out trigger's 10).
pub const SCHEDULE_SECS: [u64; 9] = [5, 300, 1_800, 7_200, 18_000, 36_000, 50_400, 72_000, 86_400];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Deliveries in flight on this node.
    pub concurrency: usize,
    /// Deliveries in flight on this node to any one endpoint.
    pub per_endpoint_concurrency: usize,
    /// How long a receiver has to answer (connection included).
    pub timeout_ms: u64,
    /// Let deliveries reach loopback addresses (development and tests; never in production).
    pub allow_loopback: bool,
    /// An endpoint that has failed every attempt for this long is disabled.
    pub disable_after_hours: u64,
    /// The retry delays, in seconds (at most 9 entries; default `SCHEDULE_SECS`).
    pub schedule_secs: Vec<u64>,
    /// Events and their delivery attempts are deleted this long after the event (0 keeps them):
    /// what a partner can list and replay. Never less than `event_retention_days` allows.
    pub keep_events_days: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            concurrency: 64,
            per_endpoint_concurrency: 8,
            timeout_ms: 15_000,
            allow_loopback: false,
            disable_after_hours: 120,
            schedule_secs: SCHEDULE_SECS.to_vec(),
            keep_events_days: 30,
        }
    }
}

impl WebhookSettings {
    /// How long events are kept: `keep_events_days`, but never less than two weeks, nor than a
    /// delivery may still be retrying (each delay with its 10 % jitter, or a `Retry-After` of up
    /// to a day instead); 0 keeps them. A lower setting is raised rather than refused, so that
    /// a longer `schedule_secs` never stops a node from starting.
    pub fn event_retention_days(&self) -> u64 {
        if self.keep_events_days == 0 {
            return 0;
        }
        let retrying_secs: u64 = self.schedule_secs.iter().map(|delay| delay + delay / 10 + 86_400).sum();
        self.keep_events_days.max(retrying_secs.div_ceil(86_400)).max(14)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.schedule_secs.is_empty() || self.schedule_secs.len() > SCHEDULE_SECS.len() {
            return Err(format!("webhooks.schedule_secs needs 1 to {} delays", SCHEDULE_SECS.len()));
        }
        if self.timeout_ms == 0 || self.concurrency == 0 || self.per_endpoint_concurrency == 0 {
            return Err("webhooks.timeout_ms, concurrency and per_endpoint_concurrency must be positive".into());
        }
        Ok(())
    }
}

/// The delivery side of webhooks, shared by this node's workers.
#[derive(Clone)]
pub struct Webhooks(Arc<Inner>);

struct Inner {
    store: Store,
    kek: Arc<Kek>,
    settings: WebhookSettings,
    live: reqwest::Client,
    sandbox: reqwest::Client,
    in_flight: Mutex<HashMap<i64, Arc<Slots>>>,
}

/// Bytes of a receiver's answer kept with the attempt.
const RESPONSE_EXCERPT: usize = 1024;

/// How long a claimed delivery waits for one of its endpoint's slots before it is handed back.
/// A healthy endpoint frees a slot within a request's time, so a burst to it is sent, not
/// deferred (each deferral is a write and a second's delay); an endpoint that does not answer
/// keeps its slots, and its deliveries go back to the queue after this short wait. At most
/// `per_endpoint_concurrency` deliveries wait so (`Slots::waiting`): a hanging endpoint holds
/// twice that many workers at most, never the ones other endpoints' deliveries need.
const ENDPOINT_WAIT: Duration = Duration::from_millis(50);

/// Per endpoint on this node: requests in flight, and deliveries waiting to send one.
struct Slots {
    sending: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
}

impl Webhooks {
    pub fn new(store: Store, kek: Arc<Kek>, settings: WebhookSettings) -> Result<Self, String> {
        settings.validate()?;
        crate::install_crypto_provider();
        let client = |environment| {
            let policy = AddressPolicy::for_partner(environment, settings.allow_loopback);
            let timeout = Duration::from_millis(settings.timeout_ms);
            reqwest::Client::builder()
                .user_agent(concat!("Onboard-Webhooks/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none())
                // A proxy would resolve the name itself, past the guard.
                .no_proxy()
                .dns_resolver(guard::GuardedResolver::new(policy))
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .pool_max_idle_per_host(settings.per_endpoint_concurrency)
                .build()
                .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))
        };
        let (live, sandbox) = (client(Environment::Live)?, client(Environment::Sandbox)?);
        Ok(Self(Arc::new(Inner { store, kek, settings, live, sandbox, in_flight: Mutex::default() })))
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.0.settings
    }

    pub fn register_jobs(&self, registry: &mut JobRegistry) {
        let this = self.clone();
        registry.register(DELIVER_JOB, self.0.settings.concurrency, move |job| {
            let this = this.clone();
            async move { this.deliver(job).await }
        });
        let (store, keep_days) = (self.0.store.clone(), self.0.settings.event_retention_days());
        registry.sweep("webhook events past webhooks.keep_events_days", "webhook_events_purged_total", move |now| {
            let store = store.clone();
            async move { usecase::purge_events(&store, keep_days, now).await }
        });
    }

    fn slots(&self, endpoint: i64) -> Arc<Slots> {
        let mut map = self.0.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let limit = self.0.settings.per_endpoint_concurrency;
        Arc::clone(map.entry(endpoint).or_insert_with(|| {
            Arc::new(Slots { sending: Arc::new(Semaphore::new(limit)), waiting: Arc::new(Semaphore::new(limit)) })
        }))
    }

    /// One of the endpoint's sending slots: at once, or after a wait of at most `ENDPOINT_WAIT`
    /// when fewer than `per_endpoint_concurrency` deliveries are already waiting for one; `None`
    /// means hand the delivery back.
    async fn sending_slot(&self, endpoint: i64) -> Option<OwnedSemaphorePermit> {
        let slots = self.slots(endpoint);
        if let Ok(permit) = slots.sending.clone().try_acquire_owned() {
            return Some(permit);
        }
        let _waiting = slots.waiting.clone().try_acquire_owned().ok()?;
        tokio::time::timeout(ENDPOINT_WAIT, slots.sending.clone().acquire_owned()).await.ok()?.ok()
    }

    async fn deliver(&self, job: ClaimedJob) -> JobOutcome {
        let Ok(target) = serde_json::from_str::<DeliveryRef>(&job.payload) else {
            return JobOutcome::Fail("the job's payload is not a delivery".into());
        };
        let store = &self.0.store;
        let delivery = match store.webhook_delivery(target).await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => return JobOutcome::Fail("the event or its endpoint no longer exists".into()),
            Err(e) => return JobOutcome::Retry(e.to_string()),
        };
        let test = delivery.event_type == EventType::Test.as_str();
        if delivery.deleted || (!delivery.enabled && !test) {
            let why = if delivery.deleted { "the endpoint was deleted" } else { "the endpoint is disabled" };
            return committed(usecase::skip_delivery(store, job, why, now_ms()).await);
        }
        let Some(permit) = self.sending_slot(target.endpoint).await else {
            let later = now_ms() + rand::rng().random_range(500..1_500);
            return committed(usecase::defer_delivery(store, job, later, now_ms()).await);
        };
        let attempted = self.attempt(&delivery, job.attempts).await;
        // The slot limits requests in flight to the endpoint, not our own bookkeeping: held
        // through the write below, it capped one endpoint at 8 ÷ (request + commit) ≈ 250
        // deliveries/s (BENCHMARKS.md, issue 23).
        drop(permit);
        let attempted = match attempted {
            Ok(attempted) => attempted,
            Err(e) => return JobOutcome::Fail(e),
        };
        let result = match &attempted {
            Attempted::Delivered { .. } => "delivered",
            Attempted::Gone { .. } => "gone",
            Attempted::Failed { refused: true, .. } => "refused",
            Attempted::Failed { .. } => "failed",
        };
        metrics::counter!("webhook_deliveries_total", "result" => result).increment(1);
        let disable_before = now_ms() - (self.0.settings.disable_after_hours as i64) * 3_600_000;
        match usecase::record_attempt(store, job, target, attempted, disable_before, now_ms()).await {
            Ok(EndpointChange::Disabled) => {
                tracing::warn!(endpoint = %delivery.endpoint_public_id, "webhook endpoint disabled");
                metrics::counter!("webhook_endpoints_disabled_total").increment(1);
                JobOutcome::Committed
            }
            Ok(EndpointChange::None) => JobOutcome::Committed,
            // The attempt happened but is not recorded: the job's lease expires and it is
            // delivered again with the same webhook-id, which receivers deduplicate on.
            Err(e) => JobOutcome::Retry(e.to_string()),
        }
    }

    /// One attempt: sign, send, classify. `Err` only when the event cannot be signed at all.
    async fn attempt(&self, d: &Delivery, attempt: i64) -> Result<Attempted, String> {
        let now = now_ms();
        let previous = d.previous_secret.as_deref().zip(d.previous_secret_until);
        let secrets = usecase::open_secrets(&self.0.kek, &d.endpoint_public_id, &d.secret, previous, now)
            .map_err(|e| e.to_string())?;
        let body = body(d).map_err(|e| format!("the stored event is not JSON: {e}"))?;
        let timestamp = now / 1000;
        let signature = signature_header(&secrets.iter().collect::<Vec<_>>(), &d.event_public_id, timestamp, &body);
        let live = usecase::is_live(&d.environment);
        let policy = AddressPolicy::for_partner(
            if live { Environment::Live } else { Environment::Sandbox },
            self.0.settings.allow_loopback,
        );
        let retry_at = |at_least: Option<Duration>| self.retry_at(attempt, at_least);
        let started = Instant::now();
        let elapsed = |started: Instant| started.elapsed().as_millis() as i64;
        if let Some(why) = guard::literal_refusal(&d.url, policy) {
            return Ok(Attempted::Failed {
                status: None,
                latency_ms: 0,
                response: None,
                error: format!("refused: the URL points at {why}"),
                refused: true,
                retry_at: retry_at(None),
            });
        }
        let client = if live { &self.0.live } else { &self.0.sandbox };
        let sent = client
            .post(&d.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.event_public_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => {
                let refused = guard::refusal_in(&err);
                let error = match &refused {
                    Some(refused) => format!("refused: {refused}"),
                    None if err.is_timeout() => format!("no answer within {} ms", self.0.settings.timeout_ms),
                    None if err.is_connect() => "cannot connect".to_owned(),
                    None => "the request failed".to_owned(),
                };
                metrics::histogram!("webhook_delivery_seconds").record(started.elapsed().as_secs_f64());
                return Ok(Attempted::Failed {
                    status: None,
                    latency_ms: elapsed(started),
                    response: None,
                    error,
                    refused: refused.is_some(),
                    retry_at: retry_at(None),
                });
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers(), now);
        let excerpt = excerpt(&mut response).await;
        let latency_ms = elapsed(started);
        metrics::histogram!("webhook_delivery_seconds").record(started.elapsed().as_secs_f64());
        let code = i64::from(status.as_u16());
        Ok(if status.is_success() {
            Attempted::Delivered { status: code, latency_ms }
        } else if status == reqwest::StatusCode::GONE {
            Attempted::Gone { status: code, latency_ms, response: excerpt }
        } else {
            let honoured = matches!(code, 429 | 502 | 503 | 504).then_some(retry_after).flatten();
            let error = if status.is_redirection() {
                format!("answered {code}; redirects are not followed")
            } else {
                format!("answered {code}")
            };
            Attempted::Failed {
                status: Some(code),
                latency_ms,
                response: excerpt,
                error,
                refused: false,
                retry_at: retry_at(honoured),
            }
        })
    }

    /// When attempt `attempt + 1` is due: the schedule's delay (±10 %), or later if the receiver
    /// asked (`Retry-After`, at most a day); None when the schedule is used up.
    fn retry_at(&self, attempt: i64, at_least: Option<Duration>) -> Option<i64> {
        let schedule = &self.0.settings.schedule_secs;
        let delay = *schedule.get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
        let jittered = (delay as f64 * 1000.0 * rand::rng().random_range(0.9..1.1)) as i64;
        let asked = at_least.map_or(0, |d| d.min(Duration::from_secs(86_400)).as_millis() as i64);
        Some(now_ms() + jittered.max(asked))
    }
}

fn committed(recorded: crate::store::StoreResult<bool>) -> JobOutcome {
    match recorded {
        Ok(_) => JobOutcome::Committed,
        Err(e) => JobOutcome::Retry(e.to_string()),
    }
}

/// `{"type", "timestamp", "data"}`: the same bytes on every attempt (keys of `data` sorted).
pub fn body(d: &Delivery) -> Result<Vec<u8>, serde_json::Error> {
    let data: serde_json::Value = serde_json::from_str(&d.data)?;
    serde_json::to_vec(&serde_json::json!({
        "type": d.event_type,
        "timestamp": crate::domain::rfc3339(d.event_created_at),
        "data": data,
    }))
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap, now: i64) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let ms = (at.unix_timestamp_nanos() / 1_000_000) as i64 - now;
    Some(Duration::from_millis(ms.max(0) as u64))
}

/// The first bytes of the answer, as text (the rest is not read).
async fn excerpt(response: &mut reqwest::Response) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < RESPONSE_EXCERPT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(RESPONSE_EXCERPT);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_kept_longer_than_their_retries_can_run() {
        let keep = |days, schedule_secs: Vec<u64>| {
            WebhookSettings { keep_events_days: days, schedule_secs, ..WebhookSettings::default() }
                .event_retention_days()
        };
        // The default schedule runs 3.15 days, 12.5 with every Retry-After at its day.
        assert_eq!(keep(30, SCHEDULE_SECS.to_vec()), 30);
        assert_eq!(keep(3, SCHEDULE_SECS.to_vec()), 14);
        assert_eq!(keep(0, SCHEDULE_SECS.to_vec()), 0, "0 keeps them");
        // Nine retries of 10 days: 99 days of jitter and 9 of Retry-After.
        assert_eq!(keep(30, vec![864_000; 9]), 108);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&headers, 0), Some(Duration::from_secs(120)));
        headers.insert(reqwest::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        let at = 1_445_412_480_000;
        assert_eq!(retry_after(&headers, at - 60_000), Some(Duration::from_secs(60)));
        headers.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, 0), None);
    }

    #[test]
    fn the_default_schedule_spans_about_three_days() {
        let total: u64 = SCHEDULE_SECS.iter().sum();
        assert!((3 * 86_400..4 * 86_400).contains(&total), "{total}");
        assert!(WebhookSettings::default().validate().is_ok());
        let too_long = WebhookSettings { schedule_secs: vec![1; 10], ..WebhookSettings::default() };
        assert!(too_long.validate().is_err());
    }
}
