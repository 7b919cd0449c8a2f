//! The durable job runner: retries with backoff, dead letters, lease takeover, and claims that
//! never overlap — on SQLite and PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use onboard::domain::now_ms;
use onboard::jobs::JobSettings;
use onboard::jobs::{JobOutcome, JobRegistry};
use onboard::store::{JobRow, NewJob, Store};
use serde_json::json;

use crate::on_both_backends;

async fn wait_for_state(store: &Store, kind: &str, state: &str) -> JobRow {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(job) = store.list_jobs(Some(kind), Some(state), 1).await.unwrap().pop() {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind} job reached {state}: {:?}",
            store.list_jobs(Some(kind), None, 10).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_backends! {
    async fn failed_jobs_are_retried_with_backoff_and_dead_lettered(app) {
        let store = app.store().clone();
        let flaky_runs = Arc::new(AtomicUsize::new(0));
        let mut registry = JobRegistry::default();
        let runs = flaky_runs.clone();
        registry.register("test.flaky", 2, move |_job| {
            let runs = runs.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) < 2 { JobOutcome::Retry("not yet".into()) } else { JobOutcome::Done }
            }
        });
        registry.register("test.broken", 1, |_job| async { JobOutcome::Retry("still broken".into()) });
        registry.register("test.invalid", 1, |_job| async { JobOutcome::Fail("bad payload".into()) });
        let settings = JobSettings { poll_interval_ms: 10, backoff_base_ms: 20, backoff_max_ms: 100, ..JobSettings::default() };
        let runner = registry.start(store.clone(), settings, "test-node");

        let now = now_ms();
        store.enqueue_job(&NewJob::new("test.flaky", json!({}), now), now).await.unwrap();
        store.enqueue_job(&NewJob { max_attempts: 3, ..NewJob::new("test.broken", json!({}), now) }, now).await.unwrap();
        store.enqueue_job(&NewJob::new("test.invalid", json!({}), now), now).await.unwrap();
        // A duplicate of a deduplicated job is not enqueued twice.
        for _ in 0..2 {
            store.enqueue_job(&NewJob::new("test.flaky", json!({"n": 2}), now).dedupe("flaky:2"), now).await.unwrap();
        }

        let done = wait_for_state(&store, "test.flaky", "done").await;
        let broken = wait_for_state(&store, "test.broken", "dead").await;
        assert_eq!((broken.attempts, broken.last_error.as_deref()), (3, Some("still broken")));
        let invalid = wait_for_state(&store, "test.invalid", "dead").await;
        assert_eq!(invalid.attempts, 1, "a permanent failure is not retried");
        runner.shutdown(Duration::from_secs(5)).await;
        assert!(done.attempts >= 1);
        assert_eq!(store.list_jobs(Some("test.flaky"), None, 10).await.unwrap().len(), 2);
        assert_eq!(flaky_runs.load(Ordering::SeqCst), 4, "three runs of the first job, one of the second");

        // An operator can send a dead job back.
        assert!(onboard::core::staff::retry_job(&store, invalid.id, "test", now_ms()).await.unwrap());
        assert!(!onboard::core::staff::retry_job(&store, invalid.id, "test", now_ms()).await.unwrap());
        let stats = store.queue_stats(now_ms()).await.unwrap();
        let invalid_stats = stats.iter().find(|s| s.kind == "test.invalid").unwrap();
        assert_eq!((invalid_stats.queued, invalid_stats.dead), (1, 0));
    }

    async fn an_expired_lease_is_taken_over_and_the_old_worker_cannot_finish(app) {
        let store = app.store();
        let now = now_ms();
        store.enqueue_job(&NewJob::new("test.lease", json!({}), now), now).await.unwrap();
        let a = store.claim_jobs("test.lease", "worker-a", 10, 50, now_ms()).await.unwrap();
        assert_eq!(a.len(), 1);
        assert!(store.claim_jobs("test.lease", "worker-b", 10, 50, now_ms()).await.unwrap().is_empty(), "leased");
        tokio::time::sleep(Duration::from_millis(80)).await;
        let b = store.claim_jobs("test.lease", "worker-b", 10, 50_000, now_ms()).await.unwrap();
        assert_eq!((b.len(), b[0].id, b[0].attempts), (1, a[0].id, 2));
        assert!(!store.complete_job(&a[0], now_ms()).await.unwrap(), "the crashed worker lost its lease");
        assert!(store.complete_job(&b[0], now_ms()).await.unwrap());
    }

    // A store without an application: an application's own sweep would race the test's.
    async fn finished_jobs_are_purged_after_their_retention_and_nothing_else_is(store: Store) {
        let store = &store;
        let now = now_ms();
        let hour = 3_600_000;
        let old = now - 200 * hour;
        for i in 0..6 {
            store.enqueue_job(&NewJob::new("test.retention", json!({ "i": i }), old), old).await.unwrap();
        }
        let claimed = store.claim_jobs("test.retention", "w", 10, 60_000, old).await.unwrap();
        assert_eq!(claimed.len(), 6);
        for job in &claimed[..5] {
            assert!(store.complete_job(job, old).await.unwrap());
        }
        assert!(store.complete_job(&claimed[5], now).await.unwrap(), "one finished just now");
        // A dead letter and a job still waiting, both from long ago, stay whatever their age.
        let dead = NewJob { max_attempts: 1, ..NewJob::new("test.retention.dead", json!({}), old) };
        store.enqueue_job(&dead, old).await.unwrap();
        let dead = store.claim_jobs("test.retention.dead", "w", 1, 60_000, old).await.unwrap();
        assert!(store.fail_job(&dead[0], "broken", true, old, old).await.unwrap());
        let waiting = NewJob { run_at: now + hour, ..NewJob::new("test.retention", json!({ "later": true }), old) };
        store.enqueue_job(&waiting, old).await.unwrap();

        assert_eq!(store.purge_done_jobs(now - 168 * hour, 2).await.unwrap(), 2, "one bounded batch");
        assert_eq!(onboard::jobs::purge_done(store, 168, now).await.unwrap(), 3, "the sweep takes the rest");
        assert_eq!(onboard::jobs::purge_done(store, 168, now).await.unwrap(), 0);
        assert_eq!(onboard::jobs::purge_done(store, 0, now + 1_000 * hour).await.unwrap(), 0, "0 keeps them all");
        let mut left: Vec<String> = store.list_jobs(Some("test.retention"), None, 10).await.unwrap()
            .into_iter().map(|j| j.state).collect();
        left.sort();
        assert_eq!(left, ["done", "queued"]);
        assert_eq!(store.list_jobs(Some("test.retention.dead"), Some("dead"), 10).await.unwrap().len(), 1);
    }

    async fn concurrent_claims_never_share_a_job(app) {
        let store = app.store().clone();
        let now = now_ms();
        for i in 0..300 {
            store.enqueue_job(&NewJob::new("test.burst", json!({"i": i}), now), now).await.unwrap();
        }
        let claim_all = |worker: &'static str| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let jobs = store.claim_jobs("test.burst", worker, 7, 60_000, now_ms()).await.unwrap();
                    if jobs.is_empty() {
                        return ids;
                    }
                    ids.extend(jobs.iter().map(|j| j.id));
                }
            })
        };
        let (a, b) = (claim_all("a"), claim_all("b"));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let all: HashSet<i64> = a.iter().chain(&b).copied().collect();
        assert_eq!(a.len() + b.len(), 300, "every job claimed once");
        assert_eq!(all.len(), 300, "no job claimed twice");
    }
}
