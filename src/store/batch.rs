//! Group commit for user inserts. Each request hands its row to a writer task; the writer takes
//! every row queued at that moment and commits them in one transaction (one fsync), then answers
//! each request. Durability is unchanged — every 2xx is still committed before it is sent — but
//! one commit now serves dozens of requests (`BENCHMARKS.md`).
//!
//! Other writes ride the same commits on SQLite as *units* (`Store::sqlite_unit`): every
//! `Store::write` — sign-ups, token families, job claims and completions, the CIP moves and staff
//! actions of `core`. Each runs in a savepoint of the batch's
//! transaction, so one that fails rolls back alone, and is answered only after the COMMIT.
//! Without them every such write was a transaction and an fsync of its own on the one write
//! connection, and a `POST /User` batch that came behind it waited for two fsyncs, not one.
//!
//! SQLite has one writer task (it has one write lock); PostgreSQL `db.batch_writers`.
//! The statements differ by backend: PostgreSQL gets fixed `UNNEST` statements (prepared once,
//! whatever the batch size), SQLite multi-row VALUES lists (it has no array parameters).

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, QueryBuilder, Sqlite, SqliteConnection};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::Tx;
use super::idempotency::{self, Claim, ClaimRequest, IdempotencyScope, StoredResponse};
use super::registrations::{Registered, RegistrationRecord};
use super::tx::BoxFuture;
use super::users::{NewMinimalUser, UserRecord, UserRow};
use super::webhooks::{self, Delivered};
use super::{Backend, BackendKind, DbSettings, Store, StoreError, StoreResult};
use crate::domain::{PartnerId, PartnerRegistration, PublicUserId, SignIn};

/// Builds the stored answer for a committed user (Idempotency-Key replays).
pub type Respond = fn(&UserRecord) -> StoredResponse;

/// Rows per transaction at most: bounded so a commit's latency stays bounded too.
const MAX_BATCH: usize = 512;

/// A seed-000 registration to insert unless the partner already has its externalUserId.
#[derive(Debug, Clone)]
pub struct NewRegistration {
    pub partner: PartnerId,
    pub registration: PartnerRegistration,
    pub public_id: PublicUserId,
    pub created_at: i64,
}

struct MinimalJob {
    user: NewMinimalUser,
    complete: Option<(IdempotencyScope, Respond)>,
    reply: oneshot::Sender<StoreResult<UserRecord>>,
}

struct RegistrationJob {
    new: NewRegistration,
    reply: oneshot::Sender<StoreResult<Registered>>,
}

struct ClaimJob {
    request: ClaimRequest,
    reply: oneshot::Sender<StoreResult<Claim>>,
}

struct CompleteJob {
    scope: IdempotencyScope,
    response: StoredResponse,
    reply: oneshot::Sender<StoreResult<()>>,
}

struct DeliveredJob {
    delivered: Delivered,
    reply: oneshot::Sender<StoreResult<bool>>,
}

/// A write of any shape that joins a SQLite batch (`Store::sqlite_unit`), type-erased so one
/// queue carries them all.
trait Unit: Send {
    /// Runs the body in a savepoint of the batch's open transaction and keeps its outcome: a
    /// body that fails is rolled back to the savepoint, its neighbours unaffected. `Err` only
    /// when the savepoint itself could not be opened or closed: the transaction is then unusable.
    fn run<'c>(&'c mut self, connection: &'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<()>>;

    /// Answers the caller once the batch is over: with the body's outcome if the batch
    /// committed, with `Overloaded` (nothing was written) if it did not.
    fn answer(self: Box<Self>, committed: bool);
}

struct TypedUnit<T, E, F> {
    body: Option<F>,
    outcome: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

/// A unit for `body`, and where its answer will arrive.
fn unit<T, E, F>(body: F) -> (Box<dyn Unit>, oneshot::Receiver<Result<T, E>>)
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    (Box::new(TypedUnit { body: Some(body), outcome: None, reply }), answer)
}

impl<T, E, F> Unit for TypedUnit<T, E, F>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
{
    fn run<'c>(&'c mut self, connection: &'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<()>> {
        Box::pin(async move {
            let Some(body) = self.body.take() else { return Ok(()) };
            let mut savepoint = connection.begin().await?;
            let outcome = body(&mut savepoint).await;
            match outcome {
                Ok(_) => savepoint.commit().await?,
                Err(_) => savepoint.rollback().await?,
            }
            self.outcome = Some(outcome);
            Ok(())
        })
    }

    fn answer(self: Box<Self>, committed: bool) {
        let outcome = match self.outcome {
            Some(outcome) if committed => outcome,
            _ => Err(StoreError::Overloaded.into()),
        };
        let _ = self.reply.send(outcome);
    }
}

enum Job {
    Minimal(MinimalJob),
    Registration(RegistrationJob),
    /// Idempotency-Key claims and completions ride the same commits: on SQLite every write
    /// would otherwise be an fsync of its own on the one writer.
    Claim(ClaimJob),
    Complete(CompleteJob),
    /// A delivered webhook (SQLite): a batch's deliveries are recorded in three statements
    /// together, where a unit each cost five round trips to the connection's thread. Rows run
    /// before units, so a failed attempt (a unit) that arrived first may be recorded after
    /// them and leave its endpoint failing until the next success: that can delay a disable,
    /// never cause one.
    Delivered(DeliveredJob),
    /// Any other SQLite write (`Store::sqlite_unit`).
    Unit(Box<dyn Unit>),
}

/// One drained batch, by kind, in arrival order within each kind.
#[derive(Default)]
struct Batch {
    rows: Rows,
    units: Vec<Box<dyn Unit>>,
}

/// The inserts and Idempotency-Key work of a batch.
#[derive(Default)]
struct Rows {
    claims: Vec<ClaimJob>,
    completions: Vec<CompleteJob>,
    minimal: Vec<MinimalJob>,
    registrations: Vec<RegistrationJob>,
    delivered: Vec<DeliveredJob>,
}

impl Rows {
    fn len(&self) -> usize {
        self.claims.len()
            + self.completions.len()
            + self.minimal.len()
            + self.registrations.len()
            + self.delivered.len()
    }

    fn into_jobs(self) -> impl Iterator<Item = Job> {
        let Rows { claims, completions, minimal, registrations, delivered } = self;
        (claims.into_iter().map(Job::Claim))
            .chain(completions.into_iter().map(Job::Complete))
            .chain(minimal.into_iter().map(Job::Minimal))
            .chain(registrations.into_iter().map(Job::Registration))
            .chain(delivered.into_iter().map(Job::Delivered))
    }
}

impl Job {
    /// Answers the job's caller with `err` (nothing of it was written).
    fn fail(self, err: StoreError) {
        match self {
            Job::Minimal(job) => drop(job.reply.send(Err(err))),
            Job::Registration(job) => drop(job.reply.send(Err(err))),
            Job::Claim(job) => drop(job.reply.send(Err(err))),
            Job::Complete(job) => drop(job.reply.send(Err(err))),
            Job::Delivered(job) => drop(job.reply.send(Err(err))),
            Job::Unit(unit) => unit.answer(false),
        }
    }
}

/// What a committed batch answers, in the order of each kind's jobs.
#[derive(Default)]
struct Outcomes {
    claims: Vec<Claim>,
    users: Vec<UserRecord>,
    registered: Vec<Registered>,
    /// Per delivery: false when its job's lease was lost (nothing recorded).
    delivered: Vec<bool>,
}

/// What one batch did: the outcome of its rows, and whether its units' savepoints were
/// committed (false when the transaction was not).
struct BatchResult {
    rows: StoreResult<Outcomes>,
    units_committed: bool,
}

impl From<StoreResult<Outcomes>> for BatchResult {
    fn from(rows: StoreResult<Outcomes>) -> Self {
        let units_committed = rows.is_ok();
        Self { rows, units_committed }
    }
}

/// The writer's queue while the writer runs (`None` without one, or after shutdown).
fn writer_queue(units: &std::sync::Mutex<Option<WeakQueue>>) -> Option<mpsc::Sender<Job>> {
    units.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref().and_then(|q| q.0.upgrade())
}

/// The writer's queue as `Store` holds it: weak, because the writer task owns a `Store` and a
/// strong handle would keep the writer alive after the application has shut down.
pub(super) struct WeakQueue(mpsc::WeakSender<Job>);

/// The write paths of the hot routes (seed 001 users, seed 000 registrations, Idempotency-Keys).
/// With `db.group_commit` they go through the writer tasks and share commits; without it each
/// is a transaction of its own. Callers never choose: the settings did, once, at start-up.
#[derive(Clone)]
pub struct UserWriter {
    store: Store,
    queue: Option<mpsc::Sender<Job>>,
}

impl UserWriter {
    /// Starts the writer tasks when `settings.group_commit` is on. `write_queue` bounds how many
    /// inserts may wait; beyond it callers get `StoreError::Overloaded` at once instead of an
    /// ever-growing latency. SQLite's other writes then join the batches too
    /// (`Store::sqlite_unit`).
    pub fn spawn(store: Store, settings: &DbSettings) -> Self {
        if !settings.group_commit {
            return Self { store, queue: None };
        }
        let writers = match store.kind() {
            BackendKind::Sqlite => 1,
            BackendKind::Postgres => settings.batch_writers.max(1),
        };
        let (tx, rx) = mpsc::channel::<Job>(settings.write_queue.max(1));
        store.attach_unit_queue(WeakQueue(tx.downgrade())); // SQLite only: PostgreSQL has no units
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers {
            tokio::spawn(write_loop(store.clone(), Arc::clone(&rx)));
        }
        Self { store, queue: Some(tx) }
    }

    /// Inserts a seed-001 user; with `complete`, its Idempotency-Key answer in the same commit.
    pub async fn create(
        &self,
        user: NewMinimalUser,
        complete: Option<(IdempotencyScope, Respond)>,
    ) -> StoreResult<UserRecord> {
        self.send(|reply| Job::Minimal(MinimalJob { user, complete, reply })).await
    }

    /// Claims an Idempotency-Key (see `idempotency::claim`).
    pub async fn claim(&self, request: ClaimRequest) -> StoreResult<Claim> {
        self.send(|reply| Job::Claim(ClaimJob { request, reply })).await
    }

    /// Stores the final answer of a claimed key.
    pub async fn complete(&self, scope: IdempotencyScope, response: StoredResponse) -> StoreResult<()> {
        self.send(|reply| Job::Complete(CompleteJob { scope, response, reply })).await
    }

    /// Gives up an unfinished claim so that a retry may run (the request failed transiently).
    pub async fn release(&self, scope: &IdempotencyScope) -> StoreResult<()> {
        self.store.release_idempotency_key(scope).await
    }

    /// Registers a seed-000 user, or returns the partner's existing registration for its id.
    pub async fn register(&self, new: NewRegistration) -> StoreResult<Registered> {
        self.send(|reply| Job::Registration(RegistrationJob { new, reply })).await
    }

    /// Hands a job to the writer, or without one commits it here as a batch of its own (the
    /// same statements either way), and waits for its answer.
    async fn send<T>(&self, job: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Job) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        match &self.queue {
            // Full or closed (shutting down): either way, not now.
            Some(queue) => queue.try_send(job(reply)).map_err(|_| StoreError::Overloaded)?,
            None => self.store.commit_alone(job(reply)).await,
        }
        answer.await.map_err(|_| StoreError::Overloaded)?
    }
}

/// How long the SQLite writer keeps its connection while jobs keep arriving. Handing the
/// connection back to sqlx's pool costs a spawned task and a ping to the connection's thread
/// before the next batch can begin (0.6–1 ms measured under load, a quarter of a batch's cycle);
/// other writers (jobs, sign-ups) wait at most this long for their turn.
const HOLD_WRITER: std::time::Duration = std::time::Duration::from_millis(10);

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
        let mut connection = match store.hold_writer().await {
            Ok(connection) => connection,
            Err(err) => {
                answer(&store, sort(batch), Err(err).into(), OnFailure::Retry).await;
                continue;
            }
        };
        let held_since = std::time::Instant::now();
        loop {
            let mut jobs = sort(std::mem::take(&mut batch));
            let (rows, units) = (jobs.rows.len(), jobs.units.len());
            let started = std::time::Instant::now();
            let result = store.commit_batch(&mut jobs, connection.as_deref_mut()).await;
            metrics::histogram!("db_batch_rows").record(rows as f64);
            metrics::counter!("db_batch_units_total").increment(units as u64);
            metrics::histogram!("db_batch_duration_seconds").record(started.elapsed().as_secs_f64());
            if result.rows.is_err() {
                drop(connection.take()); // the one-by-one retry below needs the pool's writer
            }
            answer(&store, jobs, result, OnFailure::Retry).await;
            if connection.is_none() || held_since.elapsed() >= HOLD_WRITER {
                break;
            }
            // More work already waiting? Commit it on the connection we hold.
            let mut rx = queue.lock().await;
            if rx.is_empty() {
                break;
            }
            rx.recv_many(&mut batch, MAX_BATCH).await;
        }
    }
}

/// Groups a drained batch by kind, keeping arrival order within each kind.
fn sort(batch: Vec<Job>) -> Batch {
    let mut jobs = Batch::default();
    for job in batch {
        match job {
            Job::Minimal(job) => jobs.rows.minimal.push(job),
            Job::Registration(job) => jobs.rows.registrations.push(job),
            Job::Claim(job) => jobs.rows.claims.push(job),
            Job::Complete(job) => jobs.rows.completions.push(job),
            Job::Delivered(job) => jobs.rows.delivered.push(job),
            Job::Unit(unit) => jobs.units.push(unit),
        }
    }
    jobs
}

/// How `answer` treats rows whose batch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnFailure {
    /// A batch of the writer: its rows are retried one by one (`Store::commit_alone`).
    Retry,
    /// A batch of one committed alone: its job gets the error as it is.
    Answer,
}

/// Answers every job of a batch with what its commit did.
async fn answer(store: &Store, batch: Batch, result: BatchResult, on_failure: OnFailure) {
    let Batch { rows: jobs, units } = batch;
    let rows = jobs.len();
    for unit in units {
        unit.answer(result.units_committed);
    }
    match result.rows {
        Ok(outcomes) => {
            for (job, claim) in jobs.claims.into_iter().zip(outcomes.claims) {
                let _ = job.reply.send(Ok(claim));
            }
            for job in jobs.completions {
                let _ = job.reply.send(Ok(()));
            }
            for (job, record) in jobs.minimal.into_iter().zip(outcomes.users) {
                let _ = job.reply.send(Ok(record));
            }
            for (job, outcome) in jobs.registrations.into_iter().zip(outcomes.registered) {
                let _ = job.reply.send(Ok(outcome));
            }
            for (job, kept) in jobs.delivered.into_iter().zip(outcomes.delivered) {
                let _ = job.reply.send(Ok(kept));
            }
        }
        Err(err) if on_failure == OnFailure::Answer => {
            if let Some(job) = jobs.into_jobs().next() {
                job.fail(err);
            }
        }
        Err(StoreError::Unavailable(err)) => {
            tracing::warn!(error = ?err, rows, "batch: database unavailable");
            jobs.into_jobs().for_each(|job| job.fail(StoreError::Overloaded));
        }
        Err(err) => {
            // One bad row must not fail its neighbours (nor a unit's failed savepoint, or a
            // failed COMMIT, a row that did nothing wrong): retry each on its own.
            tracing::warn!(error = ?err, rows, "batch failed; retrying job by job");
            for job in jobs.into_jobs() {
                store.commit_alone(job).await;
            }
        }
    }
}

impl Store {
    /// Commits one job as a batch of its own, on the pool's write connection, and answers it:
    /// the path without a writer task, and the retry of a failed batch's rows one by one.
    fn commit_alone(&self, job: Job) -> BoxFuture<'_, ()> {
        // Boxed: `answer` retries through here, so the two futures would otherwise contain
        // each other. A batch of one is not retried again: its job gets the error as it is.
        Box::pin(async move {
            let mut batch = sort(vec![job]);
            let result = self.commit_batch(&mut batch, None).await;
            answer(self, batch, result, OnFailure::Answer).await;
        })
    }
}

/// The stored e-mail of a registration (only for method EMAIL).
fn registration_email(new: &NewRegistration) -> Option<&str> {
    match &new.registration.sign_in {
        SignIn::Email(email) => Some(email.as_str()),
        _ => None,
    }
}

/// Matches RETURNING rows to jobs by public id (neither database promises RETURNING order).
fn by_public_id<R>(rows: Vec<R>, public_id: impl Fn(&R) -> String) -> HashMap<String, R> {
    rows.into_iter().map(|row| (public_id(&row), row)).collect()
}

/// Seed-000 registrations inside the batch's open transaction: rows the INSERT did not return
/// already existed (or came twice in this batch) and are read back in the same transaction.
macro_rules! finish_registrations {
    ($tx:ident, $rows:expr, $jobs:expr) => {{
        let mut inserted = by_public_id($rows, |r: &RegistrationRecord| r.public_id.clone());
        let mut outcomes = Vec::with_capacity($jobs.len());
        for job in $jobs {
            let outcome = match inserted.remove(job.new.public_id.as_str()) {
                Some(record) => Registered::Created(record),
                None => {
                    let existing: RegistrationRecord = sqlx::query_as(concat!(
                        "SELECT ",
                        registration_columns!(),
                        " FROM users WHERE partner_id = $1 AND external_user_id = $2"
                    ))
                    .bind(job.new.partner.get())
                    .bind(job.new.registration.external_user_id.as_str())
                    .fetch_one(&mut *$tx)
                    .await?;
                    Registered::Existing(existing)
                }
            };
            outcomes.push(outcome);
        }
        outcomes
    }};
}

/// Seed-001 users inside the batch's open transaction, completing their Idempotency-Keys.
macro_rules! finish_minimal {
    ($tx:ident, $rows:expr, $jobs:expr) => {{
        let mut inserted = by_public_id($rows, |r: &UserRow| r.public_id.clone());
        let mut records = Vec::with_capacity($jobs.len());
        for job in $jobs {
            let row = inserted
                .remove(job.user.public_id.as_str())
                .ok_or_else(|| StoreError::Corrupt("a batched insert returned fewer rows".into()))?;
            let record = UserRecord::try_from(row)?;
            if let Some((scope, respond)) = &job.complete {
                let response = respond(&record);
                idempotency::complete(&mut Tx::from(&mut *$tx), scope, &response).await?;
            }
            records.push(record);
        }
        records
    }};
}

/// The batch's Idempotency-Key claims and completions, inside its open transaction.
macro_rules! idempotency_jobs {
    ($tx:ident, $jobs:expr) => {{
        let mut claims = Vec::with_capacity($jobs.claims.len());
        for job in &$jobs.claims {
            claims.push(idempotency::claim(&mut Tx::from(&mut *$tx), &job.request).await?);
        }
        for job in &$jobs.completions {
            idempotency::complete(&mut Tx::from(&mut *$tx), &job.scope, &job.response).await?;
        }
        claims
    }};
}

/// The batch's inserts on `$conn` (an open transaction, or a connection in autocommit when the
/// batch is one statement), with the backend's two insert functions.
macro_rules! insert_batch {
    ($conn:ident, $jobs:expr, $insert_minimal:ident, $insert_registrations:ident) => {{
        let (minimal, registrations) = (&$jobs.minimal, &$jobs.registrations);
        let mut users = Vec::new();
        if !minimal.is_empty() {
            let rows = $insert_minimal(&mut *$conn, minimal).await?;
            users = finish_minimal!($conn, rows, minimal);
        }
        let mut registered = Vec::new();
        if !registrations.is_empty() {
            let rows = $insert_registrations(&mut *$conn, registrations).await?;
            registered = finish_registrations!($conn, rows, registrations);
        }
        (users, registered)
    }};
}

impl Rows {
    /// True when the batch is one INSERT with nothing else that must share its transaction.
    /// Such a batch runs in autocommit: the statement is atomic and durable on its own, and
    /// leaving out BEGIN and COMMIT saves two round trips to the database (on SQLite, to the
    /// connection's thread: ~0.3 ms each on a loaded machine, a third of a batch's cycle;
    /// BENCHMARKS.md). Rows a registration INSERT did not return are read back after the
    /// commit, which is safe because a committed registration never changes.
    fn is_one_statement(&self) -> bool {
        self.claims.is_empty()
            && self.completions.is_empty()
            && self.delivered.is_empty()
            && self.minimal.is_empty() != self.registrations.is_empty()
            && self.minimal.iter().all(|job| job.complete.is_none())
    }
}

impl Store {
    /// Points SQLite units at the writer's queue (a no-op on PostgreSQL).
    fn attach_unit_queue(&self, queue: WeakQueue) {
        if let Backend::Sqlite { units, .. } = &*self.backend {
            *units.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(queue);
        }
    }

    /// Runs `body` as one atomic write on SQLite's write connection: inside the next
    /// group-commit batch when the writer runs (in a savepoint of its own; the answer comes after
    /// the batch's COMMIT, so an `Ok` is durable), or as a transaction of its own when there is
    /// no writer (the CLI, or after shutdown). `body` must not wait for another unit: it runs on
    /// the writer's task. Use it through `Store::write`, which gives PostgreSQL the same body as a
    /// transaction of its own.
    pub(super) async fn sqlite_unit<T, E, F>(&self, body: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        let Backend::Sqlite { writer, units, .. } = &*self.backend else {
            return Err(StoreError::Corrupt("a SQLite unit on another backend".into()).into());
        };
        if let Some(queue) = writer_queue(units) {
            let (unit, answer) = unit(body);
            // Waits for room rather than failing: units are few and each one matters (a
            // sign-up, a job's lease); a closed queue means shutdown.
            queue.send(Job::Unit(unit)).await.map_err(|_| StoreError::Overloaded)?;
            return answer.await.map_err(|_| StoreError::Overloaded)?;
        }
        let mut tx = writer.begin_with(BEGIN_WRITE).await.map_err(StoreError::from)?;
        let value = body(&mut tx).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(value)
    }

    /// Records a delivered webhook attempt with its job's completion (`webhooks::Delivered`);
    /// false when the job's lease was lost, and nothing was recorded. On SQLite with a writer it
    /// joins the next batch as a row, otherwise it is a transaction of its own.
    pub async fn record_delivered(&self, delivered: Delivered) -> StoreResult<bool> {
        let queue = match &*self.backend {
            Backend::Sqlite { units, .. } => writer_queue(units),
            Backend::Postgres(_) => None,
        };
        if let Some(queue) = queue {
            let (reply, answer) = oneshot::channel();
            queue.send(Job::Delivered(DeliveredJob { delivered, reply })).await.map_err(|_| StoreError::Overloaded)?;
            return answer.await.map_err(|_| StoreError::Overloaded)?;
        }
        self.write(move |mut tx| Box::pin(async move { webhooks::record_delivered(&mut tx, &delivered).await })).await
    }

    /// SQLite's one write connection, taken from its pool for a run of batches (`HOLD_WRITER`);
    /// `None` on PostgreSQL, whose writers take a pooled connection per batch.
    async fn hold_writer(&self) -> StoreResult<Option<PoolConnection<Sqlite>>> {
        match &*self.backend {
            Backend::Sqlite { writer, .. } => Ok(Some(writer.acquire().await?)),
            Backend::Postgres(_) => Ok(None),
        }
    }

    /// Runs every job of the batch in one transaction (or one autocommit statement, see
    /// `Batch::is_one_statement`): claims and completions first (a request is never both
    /// claiming and inserting in one batch), then the inserts, then the units. On SQLite it runs
    /// on `held`, the write connection the writer holds (`hold_writer`).
    async fn commit_batch(&self, jobs: &mut Batch, held: Option<&mut SqliteConnection>) -> BatchResult {
        let result = match &*self.backend {
            Backend::Sqlite { writer, .. } => match held {
                Some(connection) => sqlite_batch(connection, jobs).await,
                None => match writer.acquire().await {
                    Ok(mut connection) => sqlite_batch(&mut connection, jobs).await,
                    Err(err) => Err(err.into()),
                },
            },
            Backend::Postgres(pool) => return pg_batch(pool, &jobs.rows).await.into(),
        };
        result.unwrap_or_else(|err| Err(err).into())
    }
}

/// A SQLite batch: its rows, then its units, in one transaction. The rows go first because
/// they can be retried and the units cannot (a unit's body runs once): rows that fail (one bad
/// row fails a multi-row INSERT) are rolled back before any unit has run.
async fn sqlite_batch(connection: &mut SqliteConnection, batch: &mut Batch) -> StoreResult<BatchResult> {
    let Batch { rows: jobs, units } = batch;
    if units.is_empty() && jobs.is_one_statement() {
        let (users, registered) = insert_batch!(connection, jobs, sqlite_insert_minimal, sqlite_insert_registrations);
        return Ok(Ok(Outcomes { users, registered, ..Outcomes::default() }).into());
    }
    let mut tx = connection.begin_with(BEGIN_WRITE).await?;
    let rows = sqlite_rows(&mut tx, jobs).await;
    if rows.is_err() {
        // The units have not run yet: roll the rows back (a failed statement may have ended the
        // transaction anyway) and give the units a transaction of their own. The rows are
        // retried one by one afterwards (`answer`).
        tx.rollback().await?;
        if units.is_empty() {
            return Ok(rows.into());
        }
        tx = connection.begin_with(BEGIN_WRITE).await?;
    }
    for unit in units {
        unit.run(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(BatchResult { rows, units_committed: true })
}

/// How SQLite write transactions begin: with the write lock. A deferred `BEGIN` takes it at
/// the first write, and a transaction that has read by then cannot wait for it — SQLite answers
/// SQLITE_BUSY at once, without the busy timeout, when the lock is held by the checkpointer's
/// RESTART (which waits for readers while it holds it). The soak benchmark saw that as a rare 503
/// on sign-ups; there is one writer connection, so taking the lock up front costs nothing.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// The rows of a SQLite batch inside its open transaction.
async fn sqlite_rows(tx: &mut SqliteConnection, jobs: &Rows) -> StoreResult<Outcomes> {
    let claims = idempotency_jobs!(tx, jobs);
    let (users, registered) = insert_batch!(tx, jobs, sqlite_insert_minimal, sqlite_insert_registrations);
    let delivered: Vec<&Delivered> = jobs.delivered.iter().map(|job| &job.delivered).collect();
    let delivered = webhooks::sqlite_record_delivered(tx, &delivered).await?;
    Ok(Outcomes { claims, users, registered, delivered })
}

/// A PostgreSQL batch (which never has units: `Store::sqlite_unit` is SQLite's).
async fn pg_batch(pool: &sqlx::PgPool, jobs: &Rows) -> StoreResult<Outcomes> {
    if jobs.is_one_statement() {
        let mut connection = pool.acquire().await?;
        let (users, registered) = insert_batch!(connection, jobs, pg_insert_minimal, pg_insert_registrations);
        return Ok(Outcomes { users, registered, ..Outcomes::default() });
    }
    let mut tx = pool.begin().await?;
    let claims = idempotency_jobs!(tx, jobs);
    let (users, registered) = insert_batch!(tx, jobs, pg_insert_minimal, pg_insert_registrations);
    // Deliveries come through the queue on SQLite only (`Store::record_delivered`); one by one
    // here keeps a batch of any shape correct.
    let mut delivered = Vec::with_capacity(jobs.delivered.len());
    for job in &jobs.delivered {
        delivered.push(webhooks::record_delivered(&mut Tx::from(&mut *tx), &job.delivered).await?);
    }
    tx.commit().await?;
    Ok(Outcomes { claims, users, registered, delivered })
}

/// Seed-001 users as one multi-row INSERT (SQLite has no array parameters).
async fn sqlite_insert_minimal(connection: &mut SqliteConnection, jobs: &[MinimalJob]) -> StoreResult<Vec<UserRow>> {
    let mut insert =
        QueryBuilder::new("INSERT INTO users (public_id, partner_id, email, additional_data, created_at) ");
    insert.push_values(jobs, |mut row, job| {
        row.push_bind(job.user.public_id.as_str())
            .push_bind(job.user.partner.get())
            .push_bind(job.user.email.as_ref().map(|e| e.as_str()))
            .push_bind(job.user.additional_data.as_deref())
            .push_bind(job.user.created_at);
    });
    insert.push(concat!(" RETURNING ", user_columns!()));
    Ok(insert.build_query_as().fetch_all(connection).await?)
}

/// Seed-000 registrations as one multi-row INSERT that skips externalUserIds the partner has.
async fn sqlite_insert_registrations(
    connection: &mut SqliteConnection,
    jobs: &[RegistrationJob],
) -> StoreResult<Vec<RegistrationRecord>> {
    let mut insert = QueryBuilder::new(
        "INSERT INTO users (public_id, partner_id, email, external_user_id, auth_method, identifier, user_type, alias, created_at) ",
    );
    insert.push_values(jobs, |mut row, job| {
        let new = &job.new;
        row.push_bind(new.public_id.as_str())
            .push_bind(new.partner.get())
            .push_bind(registration_email(new))
            .push_bind(new.registration.external_user_id.as_str())
            .push_bind(new.registration.sign_in.method().as_str())
            .push_bind(new.registration.sign_in.identifier())
            .push_bind(new.registration.user_type.as_str())
            .push_bind(new.registration.alias.as_ref().map(|a| a.as_str()))
            .push_bind(new.created_at);
    });
    insert.push(" ON CONFLICT (partner_id, external_user_id) DO NOTHING");
    insert.push(concat!(" RETURNING ", registration_columns!()));
    Ok(insert.build_query_as().fetch_all(connection).await?)
}

/// Seed-001 users as one fixed `UNNEST` statement, prepared once whatever the batch size.
async fn pg_insert_minimal(connection: &mut PgConnection, jobs: &[MinimalJob]) -> StoreResult<Vec<UserRow>> {
    let public_ids: Vec<&str> = jobs.iter().map(|j| j.user.public_id.as_str()).collect();
    let partners: Vec<i64> = jobs.iter().map(|j| j.user.partner.get()).collect();
    let emails: Vec<Option<&str>> = jobs.iter().map(|j| j.user.email.as_ref().map(|e| e.as_str())).collect();
    let data: Vec<Option<&str>> = jobs.iter().map(|j| j.user.additional_data.as_deref()).collect();
    let created: Vec<i64> = jobs.iter().map(|j| j.user.created_at).collect();
    Ok(sqlx::query_as(concat!(
        "INSERT INTO users (public_id, partner_id, email, additional_data, created_at)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[])",
        " RETURNING ",
        user_columns!()
    ))
    .bind(&public_ids)
    .bind(&partners)
    .bind(&emails)
    .bind(&data)
    .bind(&created)
    .fetch_all(connection)
    .await?)
}

/// Seed-000 registrations as one fixed `UNNEST` statement that skips externalUserIds the partner has.
async fn pg_insert_registrations(
    connection: &mut PgConnection,
    jobs: &[RegistrationJob],
) -> StoreResult<Vec<RegistrationRecord>> {
    let column =
        |f: fn(&NewRegistration) -> Option<&str>| -> Vec<Option<&str>> { jobs.iter().map(|j| f(&j.new)).collect() };
    let public_ids = column(|n| Some(n.public_id.as_str()));
    let emails = column(registration_email);
    let external_ids = column(|n| Some(n.registration.external_user_id.as_str()));
    let methods = column(|n| Some(n.registration.sign_in.method().as_str()));
    let identifiers = column(|n| n.registration.sign_in.identifier());
    let types = column(|n| Some(n.registration.user_type.as_str()));
    let aliases = column(|n| n.registration.alias.as_ref().map(|a| a.as_str()));
    let partners: Vec<i64> = jobs.iter().map(|j| j.new.partner.get()).collect();
    let created: Vec<i64> = jobs.iter().map(|j| j.new.created_at).collect();
    Ok(sqlx::query_as(concat!(
        "INSERT INTO users (public_id, partner_id, email, external_user_id, auth_method, identifier, user_type, alias, created_at)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[])
         ON CONFLICT (partner_id, external_user_id) DO NOTHING",
        " RETURNING ",
        registration_columns!()
    ))
    .bind(&public_ids)
    .bind(&partners)
    .bind(&emails)
    .bind(&external_ids)
    .bind(&methods)
    .bind(&identifiers)
    .bind(&types)
    .bind(&aliases)
    .bind(&created)
    .fetch_all(connection)
    .await?)
}

#[cfg(test)]
mod tests {
    //! White-box: batches built by hand, so a unit and rows are sure to share one transaction.

    use super::*;
    use crate::auth::credentials::{NewApiKey, NewClient};
    use crate::domain::{Environment, PartnerName};
    use crate::store::DbSettings;
    use crate::store::jobs::{self, NewJob};
    use crate::store::pin_unit;

    async fn store() -> (Store, PartnerId, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("units.db").display());
        let store = Store::connect(&url, &DbSettings::default()).await.unwrap();
        store.migrate().await.unwrap();
        let name = PartnerName::parse("Units").unwrap();
        let key = NewApiKey::generate(Environment::Live);
        let partner = store.create_partner(&name, Environment::Live, &key, &NewClient::generate(), 1).await.unwrap();
        (store, partner.id, dir)
    }

    /// A unit that enqueues a job of `kind`, then fails if told to.
    fn job_unit(kind: &'static str, fail: bool) -> (Box<dyn Unit>, oneshot::Receiver<StoreResult<()>>) {
        unit(move |tx| {
            pin_unit(async move {
                jobs::enqueue(&mut Tx::from(tx), &NewJob::new(kind, serde_json::json!({}), 1), 1).await?;
                if fail {
                    return Err(StoreError::Corrupt("refused".into()));
                }
                Ok(())
            })
        })
    }

    fn minimal(
        partner: PartnerId,
        public_id: &PublicUserId,
    ) -> (MinimalJob, oneshot::Receiver<StoreResult<UserRecord>>) {
        let (reply, answer) = oneshot::channel();
        let user =
            NewMinimalUser { partner, public_id: public_id.clone(), email: None, additional_data: None, created_at: 1 };
        (MinimalJob { user, complete: None, reply }, answer)
    }

    async fn job_kinds(store: &Store) -> Vec<String> {
        store.list_jobs(None, None, 100).await.unwrap().into_iter().map(|job| job.kind).collect()
    }

    #[tokio::test]
    async fn a_failing_unit_rolls_back_alone_and_the_rest_of_its_batch_commits() {
        let (store, partner, _dir) = store().await;
        let mut batch = Batch::default();
        let (user, user_answer) = minimal(partner, &PublicUserId::generate());
        batch.rows.minimal.push(user);
        let mut answers = Vec::new();
        for (kind, fail) in [("unit.a", false), ("unit.b", true), ("unit.c", false)] {
            let (unit, answer) = job_unit(kind, fail);
            batch.units.push(unit);
            answers.push(answer);
        }

        let mut connection = store.hold_writer().await.unwrap().unwrap();
        let result = sqlite_batch(&mut connection, &mut batch).await.unwrap();
        assert!(result.units_committed && result.rows.is_ok());
        drop(connection);
        answer(&store, batch, result, OnFailure::Retry).await;

        assert!(user_answer.await.unwrap().is_ok());
        let outcomes: Vec<bool> = futures_ok(answers).await;
        assert_eq!(outcomes, [true, false, true]);
        assert_eq!(job_kinds(&store).await, ["unit.a", "unit.c"]);
        assert_eq!(store.count_users(partner).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_writer_batch_of_one_row_that_failed_is_retried_and_a_batch_of_one_alone_is_not() {
        let (store, partner, _dir) = store().await;
        // The batch failed for a reason that was not its row's (a failed COMMIT, say): nothing
        // was written, and the row is retried on its own.
        let (job, answer_rx) = minimal(partner, &PublicUserId::generate());
        let mut batch = Batch::default();
        batch.rows.minimal.push(job);
        let failed = BatchResult { rows: Err(StoreError::Corrupt("commit failed".into())), units_committed: false };
        answer(&store, batch, failed, OnFailure::Retry).await;
        assert!(answer_rx.await.unwrap().is_ok(), "retried on its own");
        assert_eq!(store.count_users(partner).await.unwrap(), 1);
        // A batch of one committed alone answers its error as it is.
        let (job, answer_rx) = minimal(partner, &PublicUserId::generate());
        let mut batch = Batch::default();
        batch.rows.minimal.push(job);
        let failed = BatchResult { rows: Err(StoreError::Corrupt("commit failed".into())), units_committed: false };
        answer(&store, batch, failed, OnFailure::Answer).await;
        assert!(matches!(answer_rx.await.unwrap(), Err(StoreError::Corrupt(_))));
        assert_eq!(store.count_users(partner).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn rows_that_fail_roll_back_alone_and_are_retried_one_by_one_after_the_units_commit() {
        let (store, partner, _dir) = store().await;
        let mut batch = Batch::default();
        // Two inserts of one public id: the multi-row INSERT fails on its unique index.
        let public_id = PublicUserId::generate();
        let (first, first_answer) = minimal(partner, &public_id);
        let (second, second_answer) = minimal(partner, &public_id);
        batch.rows.minimal.extend([first, second]);
        let (unit, unit_answer) = job_unit("unit.a", false);
        batch.units.push(unit);

        let mut connection = store.hold_writer().await.unwrap().unwrap();
        let result = sqlite_batch(&mut connection, &mut batch).await.unwrap();
        assert!(result.units_committed);
        assert!(matches!(result.rows, Err(StoreError::Conflict(_))), "{:?}", result.rows.as_ref().err());
        assert_eq!(store.count_users(partner).await.unwrap(), 0, "the rows were rolled back");
        drop(connection);
        answer(&store, batch, result, OnFailure::Retry).await;

        assert!(unit_answer.await.unwrap().is_ok());
        assert_eq!(job_kinds(&store).await, ["unit.a"]);
        assert!(first_answer.await.unwrap().is_ok(), "retried on its own");
        assert!(matches!(second_answer.await.unwrap(), Err(StoreError::Conflict(_))));
        assert_eq!(store.count_users(partner).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn units_through_the_writer_commit_beside_concurrent_inserts_and_fall_back_without_it() {
        let (store, partner, dir) = store().await;
        let writer = UserWriter::spawn(store.clone(), &DbSettings { write_queue: 1024, ..DbSettings::default() });
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50 {
            let (store, writer) = (store.clone(), writer.clone());
            tasks.spawn(async move {
                let job = NewJob::new("unit.burst", serde_json::json!({ "i": i }), 1);
                store.enqueue_job(&job, 1).await.unwrap();
                let user = NewMinimalUser {
                    partner,
                    public_id: PublicUserId::generate(),
                    email: None,
                    additional_data: None,
                    created_at: 1,
                };
                writer.create(user, None).await.unwrap();
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        // A failing unit through the writer answers its error and writes nothing.
        let refused = store
            .sqlite_unit(|tx| {
                pin_unit(async move {
                    jobs::enqueue(&mut Tx::from(tx), &NewJob::new("unit.refused", serde_json::json!({}), 1), 1).await?;
                    Err::<(), _>(StoreError::Corrupt("refused".into()))
                })
            })
            .await;
        assert!(matches!(refused, Err(StoreError::Corrupt(_))));

        // Every answer was durable: a second, independent connection sees all of it.
        let url = format!("sqlite://{}", dir.path().join("units.db").display());
        let other = Store::connect(&url, &DbSettings::default()).await.unwrap();
        assert_eq!(other.list_jobs(Some("unit.burst"), None, 100).await.unwrap().len(), 50);
        assert!(other.list_jobs(Some("unit.refused"), None, 100).await.unwrap().is_empty());
        assert_eq!(other.count_users(partner).await.unwrap(), 50);

        // Without a writer (the application is gone) the same write is a transaction of its own.
        drop(writer);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        store.enqueue_job(&NewJob::new("unit.alone", serde_json::json!({}), 1), 1).await.unwrap();
        let claimed = store.claim_jobs("unit.alone", "w", 10, 60_000, 2).await.unwrap();
        assert_eq!(claimed.len(), 1);
    }

    #[tokio::test]
    async fn an_idle_job_poll_never_waits_for_the_write_lock() {
        let (store, _partner, dir) = store().await;
        let _writer = UserWriter::spawn(store.clone(), &DbSettings { write_queue: 64, ..DbSettings::default() });
        // Another process holds SQLite's write lock (a long transaction, a RESTART checkpoint).
        let url = format!("sqlite://{}", dir.path().join("units.db").display());
        let mut other = <SqliteConnection as Connection>::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();

        let poll = store.claim_jobs("unit.idle", "w", 10, 60_000, 1);
        let claimed = tokio::time::timeout(std::time::Duration::from_secs(1), poll).await;
        assert!(claimed.expect("answered without the write lock").unwrap().is_empty());
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    }

    #[tokio::test]
    async fn a_write_that_reads_first_waits_for_a_held_write_lock() {
        let (store, _partner, dir) = store().await;
        let url = format!("sqlite://{}", dir.path().join("units.db").display());
        // In a batch (with the writer) and in a transaction of its own (without it).
        for batched in [true, false] {
            let writer = batched.then(|| UserWriter::spawn(store.clone(), &DbSettings::default()));
            let mut other = <SqliteConnection as Connection>::connect(&url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
            let write = tokio::spawn({
                let store = store.clone();
                async move {
                    store
                        .sqlite_unit(|tx| {
                            pin_unit(async move {
                                let _: i64 =
                                    sqlx::query_scalar("SELECT COUNT(*) FROM jobs").fetch_one(&mut *tx).await?;
                                jobs::enqueue(&mut Tx::from(tx), &NewJob::new("unit.late", serde_json::json!({}), 1), 1)
                                    .await
                            })
                        })
                        .await
                }
            });
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
            write.await.unwrap().expect("waited for the lock, then committed");
            drop(writer);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(store.list_jobs(Some("unit.late"), None, 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_batch_records_its_deliveries_together_and_skips_one_whose_lease_was_lost() {
        use crate::store::webhooks::{DELIVER_JOB, DeliveryRef, NewEndpoint, insert_endpoint};
        let (store, partner, _dir) = store().await;
        let endpoint = NewEndpoint {
            public_id: "ep_batch".into(),
            partner_id: partner.get(),
            url: "https://example.com/hooks".into(),
            description: None,
            events: None,
            secret: vec![1, 2, 3],
            now: 1,
        };
        let endpoint =
            store.write(move |mut tx| pin_unit(async move { insert_endpoint(&mut tx, &endpoint).await })).await;
        let endpoint = endpoint.unwrap().id;
        // Four users, four `user.created` deliveries (the migration's triggers); the endpoint
        // has been failing.
        let mut batch = Batch::default();
        for _ in 0..4 {
            batch.rows.minimal.push(minimal(partner, &PublicUserId::generate()).0);
        }
        let mut connection = store.hold_writer().await.unwrap().unwrap();
        assert!(sqlite_batch(&mut connection, &mut batch).await.unwrap().rows.is_ok());
        sqlx::query("UPDATE webhook_endpoints SET failing_since = 5").execute(&mut *connection).await.unwrap();
        drop(connection);
        let mut claimed = store.claim_jobs(DELIVER_JOB, "w1", 10, 60_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 4);
        // The first job's lease ran out and this node took it over: its stale attempt and the
        // new one meet in one batch, with the same id and worker.
        let taken_over = store.claim_jobs(DELIVER_JOB, "w1", 1, 60_000, 60_011).await.unwrap();
        assert_eq!((taken_over[0].id, taken_over[0].attempts), (claimed[0].id, 2));
        claimed.insert(1, taken_over.into_iter().next().unwrap());
        // And the last one is another worker's now.
        claimed[4].worker = "w2".into();

        let mut batch = Batch::default();
        let mut answers = Vec::new();
        for job in claimed {
            let delivery: DeliveryRef = serde_json::from_str(&job.payload).unwrap();
            let (reply, answer) = oneshot::channel();
            let delivered = Delivered { job, delivery, status: 204, latency_ms: 3, at: 20 };
            batch.rows.delivered.push(DeliveredJob { delivered, reply });
            answers.push(answer);
        }
        let mut connection = store.hold_writer().await.unwrap().unwrap();
        let result = sqlite_batch(&mut connection, &mut batch).await.unwrap();
        drop(connection);
        answer(&store, batch, result, OnFailure::Retry).await;
        let mut kept = Vec::new();
        for answer in answers {
            kept.push(answer.await.unwrap().unwrap());
        }
        assert_eq!(kept, [false, true, true, true, false]);

        let reader = match &*store.backend {
            Backend::Sqlite { reader, .. } => reader.clone(),
            Backend::Postgres(_) => unreachable!(),
        };
        let states: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, updated_at FROM jobs ORDER BY id").fetch_all(&reader).await.unwrap();
        assert_eq!(states, [("done".into(), 20), ("done".into(), 20), ("done".into(), 20), ("running".into(), 10)]);
        let attempts: Vec<(i64, i64, String, i64, i64)> =
            sqlx::query_as("SELECT endpoint_id, attempt, result, status, latency_ms FROM webhook_attempts ORDER BY id")
                .fetch_all(&reader)
                .await
                .unwrap();
        let delivered = |attempt| (endpoint, attempt, "delivered".to_owned(), 204, 3);
        assert_eq!(attempts, [delivered(2), delivered(1), delivered(1)], "none for the stale or foreign attempt");
        let failing: Option<i64> =
            sqlx::query_scalar("SELECT failing_since FROM webhook_endpoints").fetch_one(&reader).await.unwrap();
        assert_eq!(failing, None, "a delivery ends the endpoint's run of failures");
    }

    /// True for each answer that was `Ok`, in order.
    async fn futures_ok(answers: Vec<oneshot::Receiver<StoreResult<()>>>) -> Vec<bool> {
        let mut outcomes = Vec::new();
        for answer in answers {
            outcomes.push(answer.await.unwrap().is_ok());
        }
        outcomes
    }
}
