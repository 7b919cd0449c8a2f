//! The in-process side of the durable job table: per-kind workers that claim due jobs with a
//! lease, run their handler, and record the outcome (done, retry with exponential backoff, or
//! dead-letter). A job whose worker died is taken over once its lease expires, by this node or
//! any other on the same database. On shutdown the workers stop claiming and wait (bounded) for
//! the jobs they hold.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::domain::now_ms;
use crate::store::{ClaimedJob, Store};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobSettings {
    /// Whether this node runs background job workers (API-only nodes can turn them off).
    pub enabled: bool,
    /// How often an idle worker looks for due jobs.
    pub poll_interval_ms: u64,
    /// How long a claimed job is held before another worker may take it over; also a job's time limit.
    pub lease_secs: u64,
    /// First retry delay; doubled per attempt up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// A kind whose oldest due-and-untried or retrying job has waited longer than this is
    /// reported stuck:
    /// `jobs_stuck{kind}` is 1, a warning is logged, `onboard jobs stats` marks it. A sanctions
    /// check that cannot run (no list loaded) shows up here instead of leaving users silently in
    /// `UpgradeInProgress`.
    pub stuck_after_secs: u64,
    /// Finished jobs are deleted this long after they finished (0 keeps them): otherwise the
    /// table, and every read of it by state, grows with each job ever run. What a job did is
    /// kept in its own tables (events, screenings, attempts, audit); a job's dedupe key guards
    /// against a second enqueue for as long as its finished row is kept.
    pub keep_done_hours: u64,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval_ms: 250,
            lease_secs: 60,
            backoff_base_ms: 1_000,
            backoff_max_ms: 600_000,
            stuck_after_secs: 600,
            keep_done_hours: 168,
        }
    }
}

impl JobSettings {
    /// Whether work created at `oldest_waiting` (ms) and still unfinished at `now` is stuck.
    pub fn is_stuck(&self, oldest_waiting: Option<i64>, now: i64) -> bool {
        oldest_waiting.is_some_and(|since| now - since > crate::domain::secs_to_ms(self.stuck_after_secs))
    }
}

/// What a handler reports.
#[derive(Debug)]
pub enum JobOutcome {
    /// Succeeded; the runner marks it done.
    Done,
    /// The handler already committed the job's completion in its own transaction (so its effects
    /// and the completion are atomic).
    Committed,
    /// Failed in a way that may pass later: retried after a backoff, dead after `max_attempts`.
    Retry(String),
    /// Will never succeed: dead-lettered at once.
    Fail(String),
}

type HandlerFuture = Pin<Box<dyn Future<Output = JobOutcome> + Send>>;
type Handler = Arc<dyn Fn(ClaimedJob) -> HandlerFuture + Send + Sync>;

struct Kind {
    handler: Handler,
    concurrency: usize,
}

/// Wakes this node's idle workers at once (after enqueueing), instead of at their next poll.
/// Wake the kinds that have new work, not all: every woken worker claims, and on SQLite a claim
/// takes the one write connection that request handlers commit on too.
#[derive(Clone, Default)]
pub struct JobWaker {
    all: Arc<Notify>,
    kinds: Arc<std::sync::RwLock<HashMap<String, Arc<Notify>>>>,
}

impl JobWaker {
    /// Wakes the workers of every kind.
    pub fn wake(&self) {
        self.all.notify_waiters();
    }

    /// Wakes the workers of `kind` only.
    pub fn wake_kind(&self, kind: &str) {
        if let Some(notify) = self.kinds.read().unwrap_or_else(|p| p.into_inner()).get(kind) {
            notify.notify_waiters();
        }
    }

    fn notify_for(&self, kind: &str) -> Arc<Notify> {
        let mut kinds = self.kinds.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(kinds.entry(kind.to_owned()).or_default())
    }
}

/// A retention sweep: deletes what is past its time, as of the given instant (ms); how many rows.
type SweepFn = Arc<dyn Fn(i64) -> Pin<Box<dyn Future<Output = crate::store::StoreResult<u64>> + Send>> + Send + Sync>;

struct Sweep {
    /// What it deletes, for the log.
    what: &'static str,
    /// The counter of rows it deleted.
    metric: &'static str,
    run: SweepFn,
}

/// Registered handlers and retention sweeps; `start` spawns their workers.
#[derive(Default)]
pub struct JobRegistry {
    kinds: HashMap<String, Kind>,
    sweeps: Vec<Sweep>,
    waker: JobWaker,
}

impl JobRegistry {
    /// A registry whose workers `waker` can wake (handlers and request handlers hold clones).
    pub fn with_waker(waker: JobWaker) -> Self {
        Self { kinds: HashMap::new(), sweeps: Vec::new(), waker }
    }

    /// A retention sweep to run once a minute on this node, beside the one for finished jobs.
    /// Two nodes sweeping at once delete disjoint rows or nothing.
    pub fn sweep<F, Fut>(&mut self, what: &'static str, metric: &'static str, sweep: F)
    where
        F: Fn(i64) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::store::StoreResult<u64>> + Send + 'static,
    {
        self.sweeps.push(Sweep { what, metric, run: Arc::new(move |now| Box::pin(sweep(now))) });
    }

    pub fn register<F, Fut>(&mut self, kind: &str, concurrency: usize, handler: F)
    where
        F: Fn(ClaimedJob) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobOutcome> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |job| Box::pin(handler(job)));
        self.kinds.insert(kind.to_owned(), Kind { handler, concurrency: concurrency.max(1) });
    }

    /// Starts the workers; their leases are held under `worker` (the node's id, so that a dead
    /// node's leases can be released at once).
    pub fn start(self, store: Store, settings: JobSettings, worker: &str) -> JobRunner {
        let (stop_tx, stop_rx) = watch::channel(false);
        let wake = self.waker.all.clone();
        let worker = worker.to_owned();
        let mut tasks = JoinSet::new();
        let kinds: Vec<String> = self.kinds.keys().cloned().collect();
        for (name, kind) in self.kinds {
            let own = self.waker.notify_for(&name);
            tasks.spawn(work_kind(
                store.clone(),
                settings.clone(),
                worker.clone(),
                name,
                kind,
                stop_rx.clone(),
                [wake.clone(), own],
            ));
        }
        let (purging, keep_hours) = (store.clone(), settings.keep_done_hours);
        let mut sweeps = vec![Sweep {
            what: "finished jobs past jobs.keep_done_hours",
            metric: "jobs_purged_total",
            run: Arc::new(move |now| {
                let store = purging.clone();
                Box::pin(async move { purge_done(&store, keep_hours, now).await })
            }),
        }];
        sweeps.extend(self.sweeps);
        tasks.spawn(sweep_periodically(sweeps, stop_rx.clone()));
        tasks.spawn(report_queue_depth(store, settings.clone(), kinds, stop_rx));
        JobRunner { stop: stop_tx, wake, tasks }
    }
}

pub struct JobRunner {
    stop: watch::Sender<bool>,
    wake: Arc<Notify>,
    tasks: JoinSet<()>,
}

impl JobRunner {
    /// Tells idle workers to look for work now (after enqueueing on this node).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Stops claiming and waits up to `grace` for running jobs; jobs still running after that
    /// keep their lease and are taken over when it expires.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        self.wake.notify_waiters();
        let drained = tokio::time::timeout(grace, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("job workers did not drain in time; their leases will expire");
            self.tasks.abort_all();
        }
    }
}

async fn work_kind(
    store: Store,
    settings: JobSettings,
    worker: String,
    kind: String,
    spec: Kind,
    mut stop: watch::Receiver<bool>,
    [wake_all, wake_own]: [Arc<Notify>; 2],
) {
    let permits = Arc::new(Semaphore::new(spec.concurrency));
    let mut running = JoinSet::new();
    let poll = Duration::from_millis(settings.poll_interval_ms);
    let lease_ms = (settings.lease_secs * 1000) as i64;
    loop {
        if *stop.borrow() {
            break;
        }
        while running.try_join_next().is_some() {}
        let free = permits.available_permits();
        let mut claimed = Vec::new();
        // The leases run from the claim, so the handlers' deadline does too.
        let claimed_at = tokio::time::Instant::now();
        if free > 0 {
            match store.claim_jobs(&kind, &worker, free as i64, lease_ms, now_ms()).await {
                Ok(jobs) => claimed = jobs,
                Err(err) => tracing::warn!(kind, error = ?err, "claiming jobs failed"),
            }
        }
        let got = claimed.len();
        for job in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let (store, handler, settings) = (store.clone(), spec.handler.clone(), settings.clone());
            running.spawn(async move {
                run_one(&store, &settings, handler, job, claimed_at).await;
                drop(permit);
            });
        }
        if got == 0 || permits.available_permits() == 0 {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = wake_all.notified() => {}
                _ = wake_own.notified() => {}
                _ = stop.changed() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
    }
    while running.join_next().await.is_some() {}
}

async fn run_one(
    store: &Store,
    settings: &JobSettings,
    handler: Handler,
    job: ClaimedJob,
    claimed_at: tokio::time::Instant,
) {
    let kind = job.kind.clone();
    let started = std::time::Instant::now();
    let outcome = if job.attempts > job.max_attempts {
        // Its earlier workers all died holding it (a job that crashes the process, say).
        JobOutcome::Fail(format!("lease expired on {} attempts", job.attempts - 1))
    } else {
        // A handler stops at four fifths of its lease, so its outcome is recorded while the lease
        // still holds and no other worker has taken the job over meanwhile.
        let deadline = claimed_at + handler_budget(settings.lease_secs);
        match tokio::time::timeout_at(deadline, handler(job.clone())).await {
            Ok(outcome) => outcome,
            Err(_) => JobOutcome::Retry(format!("timed out after {:.1}s", started.elapsed().as_secs_f64())),
        }
    };
    metrics::histogram!("jobs_run_seconds", "kind" => kind.clone()).record(started.elapsed().as_secs_f64());
    let now = now_ms();
    let (label, recorded) = match &outcome {
        JobOutcome::Done => ("done", store.complete_job(&job, now).await),
        JobOutcome::Committed => ("done", Ok(true)),
        JobOutcome::Retry(error) => {
            let retry_at = now + backoff_ms(job.attempts, settings.backoff_base_ms, settings.backoff_max_ms);
            let dead = job.attempts >= job.max_attempts;
            tracing::warn!(kind, job = job.id, attempt = job.attempts, dead, error, "job failed");
            (if dead { "dead" } else { "retry" }, store.fail_job(&job, error, false, retry_at, now).await)
        }
        JobOutcome::Fail(error) => {
            tracing::error!(kind, job = job.id, error, "job failed permanently");
            ("dead", store.fail_job(&job, error, true, now, now).await)
        }
    };
    match recorded {
        Ok(true) => {}
        Ok(false) => tracing::warn!(kind, job = job.id, "job lease was lost before its outcome was recorded"),
        Err(err) => {
            tracing::warn!(kind, job = job.id, error = ?err, "recording a job outcome failed; the lease will expire")
        }
    }
    metrics::counter!("jobs_finished_total", "kind" => kind, "outcome" => label).increment(1);
}

/// How long a handler may run: the lease less a fifth, left for recording its outcome.
fn handler_budget(lease_secs: u64) -> Duration {
    Duration::from_secs(lease_secs).mul_f64(0.8)
}

/// `base × 2^(attempt-1)`, capped, with ±20 % jitter so retries of a burst spread out.
pub fn backoff_ms(attempt: i64, base_ms: u64, max_ms: u64) -> i64 {
    let exponent = attempt.clamp(1, 30) as u32 - 1;
    let raw = base_ms.saturating_mul(1u64 << exponent).min(max_ms) as f64;
    let jitter = rand::rng().random_range(0.8..1.2);
    (raw * jitter) as i64
}

/// Rows deleted per write by the retention sweep.
const PURGE_BATCH: i64 = 1_000;

/// Deletes every job that finished more than `keep_hours` before `now`, a batch per write, and
/// returns how many; 0 hours keeps them all.
pub async fn purge_done(store: &Store, keep_hours: u64, now: i64) -> crate::store::StoreResult<u64> {
    if keep_hours == 0 {
        return Ok(0);
    }
    let before = now.saturating_sub(crate::domain::secs_to_ms(keep_hours.saturating_mul(3_600)));
    let mut purged = 0;
    loop {
        let deleted = store.purge_done_jobs(before, PURGE_BATCH).await?;
        purged += deleted;
        if deleted < PURGE_BATCH as u64 {
            return Ok(purged);
        }
        // Between batches, the writes that were waiting for the connection go first.
        tokio::task::yield_now().await;
    }
}

/// The retention sweeps, once a minute on every node that runs workers (two nodes sweeping at
/// once delete disjoint rows or nothing).
async fn sweep_periodically(sweeps: Vec<Sweep>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for sweep in &sweeps {
            // Shutdown does not wait for a long first sweep (a deployment onto old history):
            // the batch in flight commits or not, as a whole, and the next start goes on.
            let purged = tokio::select! {
                purged = (sweep.run)(now_ms()) => purged,
                _ = stop.changed() => return,
            };
            match purged {
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!(sweep.metric).increment(n);
                    tracing::info!(deleted = n, what = sweep.what, "retention sweep");
                }
                Err(err) => tracing::warn!(error = ?err, what = sweep.what, "retention sweep failed; it runs again"),
            }
        }
    }
}

async fn report_queue_depth(store: Store, settings: JobSettings, kinds: Vec<String>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut stuck: std::collections::HashSet<String> = Default::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = now_ms();
        let Ok(stats) = store.queue_stats(now).await else { continue };
        for kind in &kinds {
            let row = stats.iter().find(|s| &s.kind == kind);
            let get = |f: fn(&crate::store::QueueStats) -> i64| row.map_or(0, f) as f64;
            metrics::gauge!("jobs_queued", "kind" => kind.clone()).set(get(|s| s.queued));
            metrics::gauge!("jobs_running", "kind" => kind.clone()).set(get(|s| s.running));
            metrics::gauge!("jobs_dead", "kind" => kind.clone()).set(get(|s| s.dead));
            let age_of = |at: Option<i64>| at.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
            let due = age_of(row.and_then(|s| s.oldest_due));
            metrics::gauge!("jobs_oldest_due_age_seconds", "kind" => kind.clone()).set(due);
            let waiting = row.and_then(|s| s.oldest_waiting);
            metrics::gauge!("jobs_oldest_waiting_age_seconds", "kind" => kind.clone()).set(age_of(waiting));
            let is_stuck = settings.is_stuck(waiting, now);
            metrics::gauge!("jobs_stuck", "kind" => kind.clone()).set(if is_stuck { 1.0 } else { 0.0 });
            // Logged when a kind becomes stuck and when it recovers, not every tick.
            if is_stuck && stuck.insert(kind.clone()) {
                tracing::warn!(
                    kind,
                    waiting_secs = age_of(waiting) as u64,
                    "jobs have waited longer than jobs.stuck_after_secs; see `onboard jobs stats`"
                );
            } else if !is_stuck && stuck.remove(kind) {
                tracing::info!(kind, "jobs of this kind are moving again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        for _ in 0..100 {
            assert!((800..=1200).contains(&backoff_ms(1, 1000, 600_000)));
            assert!((3200..=4800).contains(&backoff_ms(3, 1000, 600_000)));
            assert!(backoff_ms(40, 1000, 600_000) <= 720_000);
        }
    }
}
