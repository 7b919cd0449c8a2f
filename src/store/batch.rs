//! Group commit for user inserts. Each request hands its row to a writer task; the writer takes
//! every row queued at that moment and commits them in one transaction (one multi-row INSERT, one
//! fsync), then answers each request. Durability is unchanged — every 201 is still committed
//! before it is sent — but one commit now serves dozens of requests (`PERF-NOTES.md`).
//!
//! SQLite has one writer task (it has one write lock); PostgreSQL several, to overlap commits.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::QueryBuilder;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::idempotency::{IdempotencyScope, StoredResponse, complete_idempotency_in};
use super::users::{CompleteWith, NewMinimalUser, UserRecord, UserRow};
use super::{Backend, BackendKind, Store, StoreError, StoreResult};

/// Builds the stored answer for a committed user (Idempotency-Key replays).
pub type Respond = fn(&UserRecord) -> StoredResponse;

/// Rows per transaction at most: bounded so a commit's latency stays bounded too.
const MAX_BATCH: usize = 512;

struct Job {
    user: NewMinimalUser,
    complete: Option<(IdempotencyScope, Respond)>,
    reply: oneshot::Sender<StoreResult<UserRecord>>,
}

#[derive(Clone)]
pub struct UserWriter {
    queue: mpsc::Sender<Job>,
}

impl UserWriter {
    /// Starts the writer tasks. `queue` bounds how many inserts may wait; beyond it callers get
    /// `StoreError::Overloaded` at once instead of an ever-growing latency.
    pub fn spawn(store: Store, queue: usize, postgres_writers: usize) -> Self {
        let writers = match store.kind() {
            BackendKind::Sqlite => 1,
            BackendKind::Postgres => postgres_writers.max(1),
        };
        let (tx, rx) = mpsc::channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers {
            tokio::spawn(write_loop(store.clone(), Arc::clone(&rx)));
        }
        Self { queue: tx }
    }

    pub async fn create(
        &self,
        user: NewMinimalUser,
        complete: Option<(IdempotencyScope, Respond)>,
    ) -> StoreResult<UserRecord> {
        let (reply, answer) = oneshot::channel();
        self.queue.try_send(Job { user, complete, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => StoreError::Overloaded,
        })?;
        answer.await.map_err(|_| StoreError::Overloaded)?
    }
}

async fn write_loop(store: Store, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut batch = Vec::with_capacity(64);
        {
            let mut rx = queue.lock().await;
            // Wait for one job, then take whatever else is already queued.
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return; // every sender is gone: the application has shut down
            }
        }
        let started = std::time::Instant::now();
        let result = store.insert_minimal_users(&batch).await;
        metrics::histogram!("db_batch_rows").record(batch.len() as f64);
        metrics::histogram!("db_batch_duration_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(records) => {
                for (job, record) in batch.into_iter().zip(records) {
                    let _ = job.reply.send(Ok(record));
                }
            }
            Err(StoreError::Unavailable(err)) => {
                tracing::warn!(error = ?err, rows = batch.len(), "batch insert: database unavailable");
                for job in batch {
                    let _ = job.reply.send(Err(StoreError::Overloaded));
                }
            }
            Err(err) => {
                // One bad row must not fail its neighbours: retry each on its own.
                tracing::warn!(error = ?err, rows = batch.len(), "batch insert failed; retrying row by row");
                for job in batch {
                    let complete =
                        job.complete.as_ref().map(|(scope, respond)| CompleteWith { scope, respond: *respond });
                    let _ = job.reply.send(store.create_minimal_user(&job.user, complete).await);
                }
            }
        }
    }
}

/// Turns the RETURNING rows into records in job order and completes the jobs' Idempotency-Keys,
/// inside the batch's open transaction.
macro_rules! finish_batch {
    ($tx:ident, $rows:expr, $jobs:expr) => {{
        // RETURNING order is not promised by either database: match rows by public id.
        let mut by_public_id: HashMap<String, UserRecord> = HashMap::with_capacity($rows.len());
        for row in $rows {
            let record = UserRecord::try_from(row)?;
            by_public_id.insert(record.public_id.as_str().to_owned(), record);
        }
        let mut records = Vec::with_capacity($jobs.len());
        for job in $jobs {
            let record = by_public_id
                .remove(job.user.public_id.as_str())
                .ok_or_else(|| StoreError::Corrupt("a batched insert returned fewer rows".into()))?;
            if let Some((scope, respond)) = &job.complete {
                let response = respond(&record);
                complete_idempotency_in!($tx, scope, response);
            }
            records.push(record);
        }
        $tx.commit().await?;
        Ok(records)
    }};
}

const RETURNING: &str = " RETURNING id, public_id, partner_id, email, additional_data, created_at";

impl Store {
    /// Inserts every job's user in one transaction and completes their Idempotency-Keys in it.
    /// Returns the records in job order. The statement differs by backend: PostgreSQL gets one
    /// fixed `UNNEST` statement (prepared once, whatever the batch size); SQLite a multi-row
    /// VALUES list (its statements are cheap to prepare and it has no array parameters).
    async fn insert_minimal_users(&self, jobs: &[Job]) -> StoreResult<Vec<UserRecord>> {
        match &*self.backend {
            Backend::Sqlite { writer, .. } => {
                let mut tx = writer.begin().await?;
                let mut insert =
                    QueryBuilder::new("INSERT INTO users (public_id, partner_id, email, additional_data, created_at) ");
                insert.push_values(jobs, |mut row, job| {
                    row.push_bind(job.user.public_id.as_str())
                        .push_bind(job.user.partner.get())
                        .push_bind(job.user.email.as_ref().map(|e| e.as_str()))
                        .push_bind(job.user.additional_data.as_deref())
                        .push_bind(job.user.created_at);
                });
                insert.push(RETURNING);
                let rows: Vec<UserRow> = insert.build_query_as().fetch_all(&mut *tx).await?;
                finish_batch!(tx, rows, jobs)
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let public_ids: Vec<&str> = jobs.iter().map(|j| j.user.public_id.as_str()).collect();
                let partners: Vec<i64> = jobs.iter().map(|j| j.user.partner.get()).collect();
                let emails: Vec<Option<&str>> =
                    jobs.iter().map(|j| j.user.email.as_ref().map(|e| e.as_str())).collect();
                let data: Vec<Option<&str>> = jobs.iter().map(|j| j.user.additional_data.as_deref()).collect();
                let created: Vec<i64> = jobs.iter().map(|j| j.user.created_at).collect();
                let rows: Vec<UserRow> = sqlx::query_as(concat!(
                    "INSERT INTO users (public_id, partner_id, email, additional_data, created_at)
                     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[])",
                    " RETURNING id, public_id, partner_id, email, additional_data, created_at"
                ))
                .bind(&public_ids)
                .bind(&partners)
                .bind(&emails)
                .bind(&data)
                .bind(&created)
                .fetch_all(&mut *tx)
                .await?;
                finish_batch!(tx, rows, jobs)
            }
        }
    }
}
