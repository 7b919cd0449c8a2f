//! The durable job table (DESIGN.md §4): jobs are rows, written in the caller's transaction,
//! claimed with a lease, retried with backoff, and dead-lettered after their last attempt.
//!
//! Claiming differs by backend: PostgreSQL uses `FOR UPDATE SKIP LOCKED` so several nodes take
//! disjoint batches without waiting on each other; SQLite has one writer at a time, so the same
//! `UPDATE … RETURNING` is already exclusive there.

use super::{Backend, Store, StoreResult, Tx, pin_unit};
use crate::domain::PartnerId;

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub partner: Option<PartnerId>,
    pub payload: serde_json::Value,
    pub max_attempts: i64,
    pub run_at: i64,
    /// Enqueueing the same key twice is a no-op (the first row stays).
    pub dedupe_key: Option<String>,
}

impl NewJob {
    pub fn new(kind: &str, payload: serde_json::Value, now: i64) -> Self {
        Self { kind: kind.to_owned(), partner: None, payload, max_attempts: 8, run_at: now, dedupe_key: None }
    }

    pub fn dedupe(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }
}

/// A job this worker holds the lease of. `attempts` counts this one.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub partner_id: Option<i64>,
    pub payload: String,
    pub attempts: i64,
    pub max_attempts: i64,
    #[sqlx(skip)]
    pub worker: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub run_at: i64,
}

/// Queue depth per kind: what `/metrics` shows.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QueueStats {
    pub kind: String,
    pub queued: i64,
    pub running: i64,
    pub dead: i64,
    /// `run_at` of the oldest job that is due, if any.
    pub oldest_due: Option<i64>,
    /// Since when the oldest waiting job has been held up: a job due and not yet tried counts
    /// from its `run_at`; one that failed and waits to retry, from its `created_at`. Jobs
    /// scheduled for later, and jobs a worker is running, do not count.
    pub oldest_waiting: Option<i64>,
}

/// Inserts `job` in the open transaction (a no-op when its dedupe key was enqueued before).
pub async fn enqueue(tx: &mut Tx<'_>, job: &NewJob, now: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO jobs (kind, partner_id, payload, state, attempts, max_attempts, run_at, dedupe_key, created_at, updated_at)
             VALUES ($1, $2, $3, 'queued', 0, $4, $5, $6, $7, $7) ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(&job.kind)
        .bind(job.partner.map(|p| p.get()))
        .bind(job.payload.to_string())
        .bind(job.max_attempts)
        .bind(job.run_at)
        .bind(job.dedupe_key.as_deref())
        .bind(now)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

/// Marks `job` done in the open transaction, clearing its payload when `redact` (it held a
/// secret only its handler needed, such as an e-mailed code); false when its lease was lost.
pub async fn complete(tx: &mut Tx<'_>, job: &ClaimedJob, redact: bool, now: i64) -> StoreResult<bool> {
    let done = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE jobs SET state = 'done', lease_until = NULL, last_error = NULL, updated_at = $1,
                    payload = CASE WHEN $5 THEN '{\"redacted\":true}' ELSE payload END
             WHERE id = $2 AND worker = $3 AND attempts = $4 AND state = 'running'",
        )
        .bind(now)
        .bind(job.id)
        .bind(&job.worker)
        .bind(job.attempts)
        .bind(redact)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// Records a failed attempt in the open transaction: back to `queued` at `retry_at`, or `dead`
/// when the attempts are used up or the failure is permanent. False when the lease was lost.
pub async fn fail(
    tx: &mut Tx<'_>,
    job: &ClaimedJob,
    error: &str,
    permanent: bool,
    retry_at: i64,
    now: i64,
) -> StoreResult<bool> {
    let done = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE jobs SET state = CASE WHEN $1 OR attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
                    run_at = $2, lease_until = NULL, last_error = $3, updated_at = $4
             WHERE id = $5 AND worker = $6 AND attempts = $7 AND state = 'running'",
        )
        .bind(permanent)
        .bind(retry_at)
        .bind(error)
        .bind(now)
        .bind(job.id)
        .bind(&job.worker)
        .bind(job.attempts)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// Hands a claimed job back without counting its attempt (its worker chose not to run it now),
/// due again at `run_at`; false when the lease was lost.
pub async fn defer(tx: &mut Tx<'_>, job: &ClaimedJob, run_at: i64, now: i64) -> StoreResult<bool> {
    let done = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, run_at = $1, lease_until = NULL, updated_at = $2
             WHERE id = $3 AND worker = $4 AND attempts = $5 AND state = 'running'",
        )
        .bind(run_at)
        .bind(now)
        .bind(job.id)
        .bind(&job.worker)
        .bind(job.attempts)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// Puts a dead job back in the queue with a fresh set of attempts; false when `id` is not a
/// dead job.
pub async fn retry_dead(tx: &mut Tx<'_>, id: i64, now: i64) -> StoreResult<bool> {
    let done = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, updated_at = $1 WHERE id = $2 AND state = 'dead'",
        )
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// The condition of a job that may be claimed at `$now` (a placeholder): due, or leased to a
/// worker whose lease has run out. One text for the claim and SQLite's pre-claim read.
// The `state IN (…)` term lets both databases use the partial index `jobs_claimable`, which
// holds only live jobs: without it a claim read every finished job of its kind (SQLite used
// `jobs_ready` on `kind` alone for the OR), 9.6 ms a claim at 45,000 done jobs and growing, so
// the validators fell minutes behind in the soak benchmark (BENCHMARKS.md, 2026-12-07).
macro_rules! claimable {
    ($now:literal) => {
        concat!(
            "state IN ('queued', 'running') AND ((state = 'queued' AND run_at <= ",
            $now,
            ") OR (state = 'running' AND lease_until < ",
            $now,
            "))"
        )
    };
}

macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $1, worker = $2, updated_at = $3
             WHERE id IN (SELECT id FROM jobs WHERE kind = $4 AND ",
            claimable!("$3"),
            " ORDER BY run_at, id LIMIT $5 ",
            $lock,
            ")
             RETURNING id, kind, partner_id, payload, attempts, max_attempts"
        )
    };
}

impl Store {
    pub async fn enqueue_job(&self, job: &NewJob, now: i64) -> StoreResult<()> {
        let job = job.clone();
        self.write(move |mut tx| pin_unit(async move { enqueue(&mut tx, &job, now).await })).await
    }

    /// Leases up to `limit` due jobs of `kind` (and jobs whose lease expired) to `worker`.
    pub async fn claim_jobs(
        &self,
        kind: &str,
        worker: &str,
        limit: i64,
        lease_ms: i64,
        now: i64,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let mut jobs: Vec<ClaimedJob> = match &*self.backend {
            // Most polls find nothing: ask a reader first, so an idle poll never takes the one
            // write connection (or a place in a group-commit batch). A job committed after this
            // read is claimed by the wake that follows its enqueue, or by the next poll.
            Backend::Sqlite { reader, .. } => {
                let due: Option<i64> = sqlx::query_scalar(concat!(
                    "SELECT 1 FROM jobs WHERE kind = $1 AND ",
                    claimable!("$2"),
                    " LIMIT 1"
                ))
                .bind(kind)
                .bind(now)
                .fetch_optional(reader)
                .await?;
                if due.is_none() {
                    return Ok(Vec::new());
                }
                let (kind, worker) = (kind.to_owned(), worker.to_owned());
                self.write(move |mut tx| {
                    pin_unit(async move {
                        Ok(on_tx!(tx, |conn| {
                            sqlx::query_as(claim_sql!(""))
                                .bind(now + lease_ms)
                                .bind(worker)
                                .bind(now)
                                .bind(kind)
                                .bind(limit)
                                .fetch_all(conn)
                                .await?
                        }))
                    })
                })
                .await?
            }
            Backend::Postgres(pool) => {
                sqlx::query_as(claim_sql!("FOR UPDATE SKIP LOCKED"))
                    .bind(now + lease_ms)
                    .bind(worker)
                    .bind(now)
                    .bind(kind)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
        };
        for job in &mut jobs {
            job.worker = worker.to_owned();
        }
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    /// Marks the job done; false when the lease had expired and another worker took it over.
    pub async fn complete_job(&self, job: &ClaimedJob, now: i64) -> StoreResult<bool> {
        let job = job.clone();
        self.write(move |mut tx| pin_unit(async move { complete(&mut tx, &job, false, now).await })).await
    }

    /// Marks the job done and clears its payload (which held a secret only its handler needed,
    /// such as an e-mailed code); false when the lease was lost meanwhile.
    pub async fn complete_job_redacted(&self, job: &ClaimedJob, now: i64) -> StoreResult<bool> {
        let job = job.clone();
        self.write(move |mut tx| pin_unit(async move { complete(&mut tx, &job, true, now).await })).await
    }

    /// Records a failed attempt (see `fail`).
    pub async fn fail_job(
        &self,
        job: &ClaimedJob,
        error: &str,
        permanent: bool,
        retry_at: i64,
        now: i64,
    ) -> StoreResult<bool> {
        let (job, error) = (job.clone(), error.to_owned());
        self.write(move |mut tx| pin_unit(async move { fail(&mut tx, &job, &error, permanent, retry_at, now).await }))
            .await
    }

    pub async fn list_jobs(&self, kind: Option<&str>, state: Option<&str>, limit: i64) -> StoreResult<Vec<JobRow>> {
        let rows = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, kind, state, attempts, last_error, run_at FROM jobs
                 WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR state = $2) ORDER BY id LIMIT $3",
            )
            .bind(kind)
            .bind(state)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    pub async fn queue_stats(&self, now: i64) -> StoreResult<Vec<QueueStats>> {
        let rows = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT kind,
                        SUM(CASE WHEN state = 'queued' THEN 1 ELSE 0 END) AS queued,
                        SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END) AS running,
                        SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) AS dead,
                        MIN(CASE WHEN state = 'queued' AND run_at <= $1 THEN run_at END) AS oldest_due,
                        MIN(CASE WHEN state = 'queued' AND attempts = 0 AND run_at <= $1 THEN run_at
                                 WHEN state = 'queued' AND attempts > 0 THEN created_at END) AS oldest_waiting
                 FROM jobs WHERE state <> 'done' GROUP BY kind ORDER BY kind",
            )
            .bind(now)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Deletes up to `limit` jobs that finished (`done`) before `before`, oldest first; returns
    /// how many. Their effects live in their own tables. A bounded batch, so that on SQLite the
    /// one write connection is never held for long; the partial index `jobs_done` finds them
    /// without reading the live or recent ones.
    pub async fn purge_done_jobs(&self, before: i64, limit: i64) -> StoreResult<u64> {
        with_pool!(self, write, |pool| {
            Ok(sqlx::query(
                "DELETE FROM jobs WHERE id IN
                    (SELECT id FROM jobs WHERE state = 'done' AND updated_at < $1 ORDER BY updated_at LIMIT $2)",
            )
            .bind(before)
            .bind(limit)
            .execute(pool)
            .await?
            .rows_affected())
        })
    }
}
