//! Partner webhooks: endpoints, the event outbox, delivery attempts. The outbox rows of user
//! inserts and CIP moves, and the delivery jobs of every event, are written by the triggers of
//! the `webhooks` migration; what is here is the rest.

use super::jobs::{self, ClaimedJob};
use super::{Store, StoreResult, Tx};

/// The job kind of one delivery (one event to one endpoint); its payload is `DeliveryRef`.
pub const DELIVER_JOB: &str = "webhook.deliver";

/// The SELECT list `EndpointRecord` decodes.
macro_rules! endpoint_columns {
    () => {
        "id, public_id, partner_id, url, description, events, enabled, disabled_reason, secret, previous_secret,
         previous_secret_until, failing_since, created_at, updated_at"
    };
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EndpointRecord {
    pub id: i64,
    pub public_id: String,
    pub partner_id: i64,
    pub url: String,
    pub description: Option<String>,
    /// NULL: every type; else `,a,b,`.
    pub events: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Sealed.
    pub secret: Vec<u8>,
    pub previous_secret: Option<Vec<u8>>,
    pub previous_secret_until: Option<i64>,
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new endpoint (its secret already sealed).
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub public_id: String,
    pub partner_id: i64,
    pub url: String,
    pub description: Option<String>,
    pub events: Option<String>,
    pub secret: Vec<u8>,
    pub now: i64,
}

/// What a delivery job points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryRef {
    pub event: i64,
    pub endpoint: i64,
}

/// Everything one delivery attempt needs, read in one query.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub event_public_id: String,
    pub event_type: String,
    pub data: String,
    pub event_created_at: i64,
    pub endpoint_public_id: String,
    pub url: String,
    pub enabled: bool,
    pub deleted: bool,
    pub secret: Vec<u8>,
    pub previous_secret: Option<Vec<u8>>,
    pub previous_secret_until: Option<i64>,
    pub environment: String,
}

#[derive(Debug, Clone, sqlx::FromRow, PartialEq, Eq)]
pub struct EventRecord {
    pub id: i64,
    pub public_id: String,
    pub partner_id: i64,
    #[sqlx(rename = "type")]
    pub event_type: String,
    pub data: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, PartialEq, Eq)]
pub struct AttemptRecord {
    pub event_id: i64,
    pub endpoint_public_id: String,
    pub attempt: i64,
    pub at: i64,
    pub result: String,
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub response: Option<String>,
    pub error: Option<String>,
    pub next_at: Option<i64>,
}

/// One attempt's outcome, as recorded.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub delivery: DeliveryRef,
    pub attempt: i64,
    pub at: i64,
    /// `delivered`, `failed`, `gone` or `refused`.
    pub result: &'static str,
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub response: Option<String>,
    pub error: Option<String>,
    /// When the next attempt is due (a retry), if any.
    pub next_at: Option<i64>,
}

pub async fn insert_endpoint(tx: &mut Tx<'_>, new: &NewEndpoint) -> StoreResult<EndpointRecord> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(concat!(
            "INSERT INTO webhook_endpoints (public_id, partner_id, url, description, events, enabled, secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, $7) RETURNING ",
            endpoint_columns!()
        ))
        .bind(&new.public_id)
        .bind(new.partner_id)
        .bind(&new.url)
        .bind(new.description.as_deref())
        .bind(new.events.as_deref())
        .bind(&new.secret)
        .bind(new.now)
        .fetch_one(conn)
        .await?
    }))
}

/// The partner's endpoint `public_id` (not deleted), read in the open transaction.
pub async fn endpoint_in(tx: &mut Tx<'_>, partner: i64, public_id: &str) -> StoreResult<Option<EndpointRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM webhook_endpoints WHERE partner_id = $1 AND public_id = $2 AND deleted_at IS NULL"
        ))
        .bind(partner)
        .bind(public_id)
        .fetch_optional(conn)
        .await?
    }))
}

/// Writes an endpoint's settings back (`record` as changed by the use case).
pub async fn update_endpoint(tx: &mut Tx<'_>, record: &EndpointRecord, now: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, description = $2, events = $3, enabled = $4, disabled_reason = $5,
                    secret = $6, previous_secret = $7, previous_secret_until = $8, failing_since = $9, updated_at = $10
             WHERE id = $11 AND deleted_at IS NULL",
        )
        .bind(&record.url)
        .bind(record.description.as_deref())
        .bind(record.events.as_deref())
        .bind(record.enabled)
        .bind(record.disabled_reason.as_deref())
        .bind(&record.secret)
        .bind(record.previous_secret.as_deref())
        .bind(record.previous_secret_until)
        .bind(record.failing_since)
        .bind(now)
        .bind(record.id)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

/// Deletes an endpoint (kept, marked deleted: its attempts still point at it); its queued
/// deliveries find it gone and stop.
pub async fn delete_endpoint(tx: &mut Tx<'_>, id: i64, now: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query("UPDATE webhook_endpoints SET deleted_at = $1, enabled = FALSE, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}

/// Appends an event to the outbox (the fan-out trigger queues its deliveries); its public id.
pub async fn emit(
    tx: &mut Tx<'_>,
    partner: i64,
    event_type: &str,
    user: Option<i64>,
    endpoint: Option<i64>,
    data: &serde_json::Value,
    now: i64,
) -> StoreResult<String> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "INSERT INTO webhook_events (partner_id, type, user_id, endpoint_id, data, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING public_id",
        )
        .bind(partner)
        .bind(event_type)
        .bind(user)
        .bind(endpoint)
        .bind(data.to_string())
        .bind(now)
        .fetch_one(conn)
        .await?
    }))
}

/// Deletes up to `limit` of the oldest events created before `before`, with their attempts, in
/// one write; how many events. The ids are chosen once, from the front of the table (there is
/// no index on `created_at`; ids follow creation), so a sweep that finds nothing old reads
/// `limit` rows, not the table, and both deletes act on the same events even when another
/// node sweeps at the same time (on PostgreSQL each statement sees its own snapshot).
/// Deliveries still waiting for such an event (a replay of a dead one) find it gone and end as
/// undeliverable.
pub async fn purge_events(tx: &mut Tx<'_>, before: i64, limit: i64) -> StoreResult<u64> {
    let ids: Vec<i64> = on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "SELECT id FROM webhook_events WHERE created_at < $1
               AND id IN (SELECT id FROM webhook_events ORDER BY id LIMIT $2) ORDER BY id",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?
    });
    if ids.is_empty() {
        return Ok(0);
    }
    let mut deleted = 0;
    for table in ["webhook_attempts WHERE event_id", "webhook_events WHERE id"] {
        deleted = on_tx!(tx, |conn| {
            let mut delete = sqlx::QueryBuilder::new(format!("DELETE FROM {table} IN ("));
            let mut list = delete.separated(", ");
            for id in &ids {
                list.push_bind(*id);
            }
            delete.push(")");
            delete.build().persistent(false).execute(&mut *conn).await?.rows_affected()
        });
    }
    Ok(deleted)
}

/// Queues a new delivery of `event` to `endpoint` (a replay), with a fresh set of attempts.
pub async fn queue_delivery(tx: &mut Tx<'_>, partner: i64, delivery: DeliveryRef, now: i64) -> StoreResult<()> {
    let mut job = super::jobs::NewJob::new(DELIVER_JOB, serde_json::json!(delivery), now);
    job.partner = crate::domain::PartnerId::new(partner).ok();
    job.max_attempts = 10;
    super::jobs::enqueue(tx, &job, now).await
}

/// Puts the partner's dead deliveries of events since `since` back in the queue; how many.
pub async fn requeue_failed(tx: &mut Tx<'_>, partner: i64, since: i64, now: i64) -> StoreResult<u64> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, updated_at = $1, last_error = NULL
             WHERE kind = 'webhook.deliver' AND partner_id = $2 AND state = 'dead' AND created_at >= $3",
        )
        .bind(now)
        .bind(partner)
        .bind(since)
        .execute(conn)
        .await?
        .rows_affected()
    }))
}

/// Records an attempt in the open transaction, and what it says about the endpoint: a delivery
/// ends its run of failures; a failure starts one (or continues it). Answers when the current
/// run of failures began (None after a delivery).
pub async fn record_attempt(tx: &mut Tx<'_>, a: &NewAttempt) -> StoreResult<Option<i64>> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO webhook_attempts (event_id, endpoint_id, attempt, at, result, status, latency_ms, response, error, next_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(a.delivery.event)
        .bind(a.delivery.endpoint)
        .bind(a.attempt)
        .bind(a.at)
        .bind(a.result)
        .bind(a.status)
        .bind(a.latency_ms)
        .bind(a.response.as_deref())
        .bind(a.error.as_deref())
        .bind(a.next_at)
        .execute(conn)
        .await
        .map(drop)?
    });
    let delivered = a.result == "delivered";
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "UPDATE webhook_endpoints
             SET failing_since = CASE WHEN $1 THEN NULL ELSE COALESCE(failing_since, $2) END
             WHERE id = $3 RETURNING failing_since",
        )
        .bind(delivered)
        .bind(a.at)
        .bind(a.delivery.endpoint)
        .fetch_optional(conn)
        .await?
        .flatten()
    }))
}

/// A delivered attempt (a 2xx), recorded with its job's completion: the common case, which
/// SQLite's writer records for a whole batch at once (`sqlite_record_delivered`).
#[derive(Debug, Clone)]
pub struct Delivered {
    pub job: ClaimedJob,
    pub delivery: DeliveryRef,
    pub status: i64,
    pub latency_ms: i64,
    pub at: i64,
}

impl Delivered {
    fn attempt(&self) -> NewAttempt {
        NewAttempt {
            delivery: self.delivery,
            attempt: self.job.attempts,
            at: self.at,
            result: "delivered",
            status: Some(self.status),
            latency_ms: self.latency_ms,
            response: None,
            error: None,
            next_at: None,
        }
    }
}

/// Records one delivered attempt in the open transaction: the job done, the attempt, the
/// endpoint no longer failing. False when the job's lease was lost (another worker holds the
/// delivery and records its own attempt); nothing is written then.
pub async fn record_delivered(tx: &mut Tx<'_>, d: &Delivered) -> StoreResult<bool> {
    if !jobs::complete(tx, &d.job, false, d.at).await? {
        return Ok(false);
    }
    record_attempt(tx, &d.attempt()).await?;
    Ok(true)
}

/// `record_delivered` for a SQLite batch, in three statements whatever its size (one per
/// delivery cost five round trips to the connection's thread, savepoint included, and at
/// 2,000 deliveries/s those left `POST /User` waiting behind them; BENCHMARKS.md, issue 23).
/// The job update checks each job's lease as `jobs::complete` does, and what it returns is
/// matched by the whole lease: a batch may hold a stale attempt of a job beside the attempt that
/// took it over (same id and, on one node, the same worker). Only the deliveries it kept are
/// recorded. Answers in `batch`'s order. Every job gets the batch's latest `at` as `updated_at`
/// (milliseconds apart; the retention sweep counts days). The statements are not kept prepared:
/// each batch size is a new text, and would push the hot statements out of the connection's
/// cache.
pub(super) async fn sqlite_record_delivered(
    conn: &mut sqlx::SqliteConnection,
    batch: &[&Delivered],
) -> StoreResult<Vec<bool>> {
    use sqlx::QueryBuilder;
    let Some(now) = batch.iter().map(|d| d.at).max() else { return Ok(Vec::new()) };
    let mut done =
        QueryBuilder::new("UPDATE jobs SET state = 'done', lease_until = NULL, last_error = NULL, updated_at = ");
    done.push_bind(now);
    // The id list lets SQLite find the rows by primary key; the row values check the leases.
    done.push(" WHERE state = 'running' AND id IN (");
    let mut ids = done.separated(", ");
    for d in batch {
        ids.push_bind(d.job.id);
    }
    done.push(") AND (id, worker, attempts) IN (VALUES ");
    for (n, d) in batch.iter().enumerate() {
        done.push(if n == 0 { "(" } else { ", (" });
        done.push_bind(d.job.id).push(", ").push_bind(d.job.worker.as_str()).push(", ").push_bind(d.job.attempts);
        done.push(")");
    }
    done.push(") RETURNING id, worker, attempts");
    let kept: std::collections::HashSet<(i64, String, i64)> =
        done.build_query_as().persistent(false).fetch_all(&mut *conn).await?.into_iter().collect();
    let is_kept = |d: &Delivered| kept.contains(&(d.job.id, d.job.worker.clone(), d.job.attempts));
    let recorded: Vec<&&Delivered> = batch.iter().filter(|d| is_kept(d)).collect();
    if !recorded.is_empty() {
        let mut insert = QueryBuilder::new(
            "INSERT INTO webhook_attempts (event_id, endpoint_id, attempt, at, result, status, latency_ms) ",
        );
        insert.push_values(&recorded, |mut row, d| {
            row.push_bind(d.delivery.event)
                .push_bind(d.delivery.endpoint)
                .push_bind(d.job.attempts)
                .push_bind(d.at)
                .push_bind("delivered")
                .push_bind(d.status)
                .push_bind(d.latency_ms);
        });
        insert.build().persistent(false).execute(&mut *conn).await?;
        let mut endpoints: Vec<i64> = recorded.iter().map(|d| d.delivery.endpoint).collect();
        endpoints.sort_unstable();
        endpoints.dedup();
        // Only an endpoint that was failing changes (`record_attempt` rewrote the row each time).
        let mut healed = QueryBuilder::new(
            "UPDATE webhook_endpoints SET failing_since = NULL WHERE failing_since IS NOT NULL AND id IN (",
        );
        let mut ids = healed.separated(", ");
        for endpoint in endpoints {
            ids.push_bind(endpoint);
        }
        healed.push(")");
        healed.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(batch.iter().map(|d| is_kept(d)).collect())
}

/// Turns an endpoint off (410 Gone, or failing for too long); false when it already was.
pub async fn disable(tx: &mut Tx<'_>, endpoint: i64, reason: &str, now: i64) -> StoreResult<bool> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $1, updated_at = $2 WHERE id = $3 AND enabled",
        )
        .bind(reason)
        .bind(now)
        .bind(endpoint)
        .execute(conn)
        .await?
        .rows_affected()
    }) == 1)
}

/// Who to tell that an endpoint was disabled: the partner's contact address (if it gave one),
/// its name, and the endpoint's id and URL, read in the open transaction.
pub async fn disabled_notice(tx: &mut Tx<'_>, endpoint: i64) -> StoreResult<Option<(String, String, String, String)>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(
            "SELECT p.contact_email, p.name, e.public_id, e.url FROM webhook_endpoints e
             JOIN partners p ON p.id = e.partner_id WHERE e.id = $1 AND p.contact_email IS NOT NULL",
        )
        .bind(endpoint)
        .fetch_optional(conn)
        .await?
    }))
}

/// The event with public id `public_id` of `partner`, read in the open transaction.
pub async fn event_in(tx: &mut Tx<'_>, partner: i64, public_id: &str) -> StoreResult<Option<EventRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(
            "SELECT id, public_id, partner_id, type, data, created_at FROM webhook_events WHERE partner_id = $1 AND public_id = $2",
        )
        .bind(partner)
        .bind(public_id)
        .fetch_optional(conn)
        .await?
    }))
}

/// The partner's endpoints (not deleted) that `event_type` goes to, read in the open transaction.
pub async fn subscribed_in(tx: &mut Tx<'_>, partner: i64, event_type: &str) -> StoreResult<Vec<i64>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "SELECT id FROM webhook_endpoints WHERE partner_id = $1 AND deleted_at IS NULL AND enabled
               AND (events IS NULL OR events LIKE '%,' || $2 || ',%') ORDER BY id",
        )
        .bind(partner)
        .bind(event_type)
        .fetch_all(conn)
        .await?
    }))
}

/// Every sealed endpoint secret, for `onboard keys rewrap`: (endpoint public id, column, value).
pub async fn sealed_secrets(tx: &mut Tx<'_>) -> StoreResult<Vec<(String, &'static str, Vec<u8>)>> {
    let rows: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = on_tx!(tx, |conn| {
        sqlx::query_as("SELECT public_id, secret, previous_secret FROM webhook_endpoints ORDER BY id")
            .fetch_all(conn)
            .await?
    });
    let mut values = Vec::new();
    for (id, secret, previous) in rows {
        values.push((id.clone(), "secret", secret));
        if let Some(previous) = previous {
            values.push((id, "previous_secret", previous));
        }
    }
    Ok(values)
}

/// Replaces one sealed endpoint secret unless it changed since it was read (compare-and-swap).
pub async fn replace_sealed(
    tx: &mut Tx<'_>,
    public_id: &str,
    column: &str,
    read: &[u8],
    resealed: &[u8],
) -> StoreResult<()> {
    // The column name is one of two literals.
    let sql = match column {
        "secret" => "UPDATE webhook_endpoints SET secret = $1 WHERE public_id = $2 AND secret = $3",
        _ => "UPDATE webhook_endpoints SET previous_secret = $1 WHERE public_id = $2 AND previous_secret = $3",
    };
    on_tx!(tx, |conn| sqlx::query(sql).bind(resealed).bind(public_id).bind(read).execute(conn).await.map(drop)?);
    Ok(())
}

impl Store {
    /// The partner's endpoints (not deleted), oldest first.
    pub async fn webhook_endpoints(&self, partner: i64) -> StoreResult<Vec<EndpointRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                endpoint_columns!(),
                " FROM webhook_endpoints WHERE partner_id = $1 AND deleted_at IS NULL ORDER BY id"
            ))
            .bind(partner)
            .fetch_all(pool)
            .await?
        }))
    }

    /// What delivering `r` needs; None when the event or endpoint is gone.
    pub async fn webhook_delivery(&self, r: DeliveryRef) -> StoreResult<Option<Delivery>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT ev.public_id AS event_public_id, ev.type AS event_type, ev.data, ev.created_at AS event_created_at,
                        ep.public_id AS endpoint_public_id, ep.url, ep.enabled, ep.deleted_at IS NOT NULL AS deleted,
                        ep.secret, ep.previous_secret, ep.previous_secret_until, p.environment
                 FROM webhook_events ev
                 JOIN webhook_endpoints ep ON ep.id = $2 AND ep.partner_id = ev.partner_id
                 JOIN partners p ON p.id = ev.partner_id
                 WHERE ev.id = $1",
            )
            .bind(r.event)
            .bind(r.endpoint)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// The partner's events after the one with public id `after` (oldest first), of `event_type`
    /// if given; at most `limit`.
    pub async fn webhook_events(
        &self,
        partner: i64,
        event_type: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, public_id, partner_id, type, data, created_at FROM webhook_events
                 WHERE partner_id = $1 AND ($2 IS NULL OR type = $2)
                   AND id > COALESCE((SELECT id FROM webhook_events WHERE partner_id = $1 AND public_id = $3), 0)
                 ORDER BY id LIMIT $4",
            )
            .bind(partner)
            .bind(event_type)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The attempts of the events `ids` (of one partner), in order.
    pub async fn webhook_attempts(&self, partner: i64, from: i64, to: i64) -> StoreResult<Vec<AttemptRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT a.event_id, ep.public_id AS endpoint_public_id, a.attempt, a.at, a.result, a.status, a.latency_ms,
                        a.response, a.error, a.next_at
                 FROM webhook_attempts a JOIN webhook_endpoints ep ON ep.id = a.endpoint_id
                 WHERE ep.partner_id = $1 AND a.event_id BETWEEN $2 AND $3 ORDER BY a.id",
            )
            .bind(partner)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?
        }))
    }
}
