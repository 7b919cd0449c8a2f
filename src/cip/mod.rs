//! The CIP validators as durable jobs (DESIGN.md §3, §4). A seed-002 registration enqueues one
//! job per check in the transaction that stores it; each job runs its check and records the
//! result (and completes itself) in one transaction; the last result of a generation decides
//! the user's next state; `cip.provision` then opens the account.

pub mod checks;

use crate::core::onboarding::{self, CheckTarget, PROVISION_JOB};
use crate::domain::cip::{Check, CheckResult, CipState, Outcome};
use crate::domain::prospect::DateOfBirth;
use crate::domain::{PartnerId, UserId, now_ms};
use crate::jobs::{JobOutcome, JobRegistry, JobWaker};
use crate::sanctions::{self, Decision, ListSelection, Sanctions};
use crate::store::{ClaimedJob, NewScreening, ProspectRecord, Store};

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    user_id: i64,
    generation: i64,
}

/// Registers the five validators and provisioning with `concurrency` workers each.
pub fn register(
    registry: &mut JobRegistry,
    store: &Store,
    sanctions: &Sanctions,
    waker: &JobWaker,
    concurrency: usize,
) {
    for check in Check::ALL {
        let (store, sanctions, waker) = (store.clone(), sanctions.clone(), waker.clone());
        registry.register(check.job_kind(), concurrency, move |job| {
            let (store, sanctions, waker) = (store.clone(), sanctions.clone(), waker.clone());
            async move { run_check(&store, &sanctions, &waker, check, job).await }
        });
    }
    let store = store.clone();
    registry.register(PROVISION_JOB, concurrency, move |job| {
        let store = store.clone();
        async move { provision(&store, job).await }
    });
}

fn payload(job: &ClaimedJob) -> Result<(Payload, i64), JobOutcome> {
    let payload: Payload =
        serde_json::from_str(&job.payload).map_err(|e| JobOutcome::Fail(format!("bad payload: {e}")))?;
    let partner = job.partner_id.ok_or_else(|| JobOutcome::Fail("job has no partner".into()))?;
    Ok((payload, partner))
}

async fn run_check(
    store: &Store,
    sanctions: &Sanctions,
    waker: &JobWaker,
    check: Check,
    job: ClaimedJob,
) -> JobOutcome {
    let (payload, partner) = match payload(&job) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let record = match store.prospect_for_job(payload.user_id, partner).await {
        Ok(Some(record)) => record,
        Ok(None) => return JobOutcome::Fail(format!("user {} of partner {partner} not found", payload.user_id)),
        Err(err) => return JobOutcome::Retry(err.to_string()),
    };
    if record.cip_generation != payload.generation {
        // The user corrected the data; the new generation has its own jobs.
        return JobOutcome::Done;
    }
    // The partner's choice of lists, read only where it is used.
    let lists = match check {
        Check::Sanctions => match store.partner_sanctions_lists(partner).await {
            Ok(stored) => stored.as_deref().and_then(|s| ListSelection::parse(s).ok()),
            Err(err) => return JobOutcome::Retry(err.to_string()),
        },
        _ => None,
    };
    let (result, screening) = match evaluate(sanctions, lists.as_ref(), check, &record) {
        Ok(evaluated) => evaluated,
        Err(outcome) => return outcome,
    };
    let started = std::time::Instant::now();
    let target = CheckTarget { user: record.id, partner, generation: payload.generation };
    let finished = onboarding::finish_check(store, job, target, result.clone(), screening, now_ms()).await;
    metrics::histogram!("cip_check_commit_seconds").record(started.elapsed().as_secs_f64());
    match finished {
        Ok(decided) => {
            let outcome = match result.outcome {
                Outcome::Pass | Outcome::Cleared => "pass",
                Outcome::Soft(_) => "soft",
                Outcome::Review => "review",
                Outcome::Fail => "fail",
            };
            metrics::counter!("cip_checks_total", "check" => check.as_str(), "outcome" => outcome).increment(1);
            if let Some(Some(state)) = decided {
                metrics::counter!("cip_decisions_total", "status" => state.status.as_str(), "detail" => state.detail.as_str())
                    .increment(1);
                if state == CipState::PROVISIONING {
                    waker.wake_kind(PROVISION_JOB);
                }
            }
            JobOutcome::Committed
        }
        Err(err) => JobOutcome::Retry(err.to_string()),
    }
}

/// Runs one check on a stored registration.
fn evaluate(
    sanctions: &Sanctions,
    lists: Option<&ListSelection>,
    check: Check,
    record: &ProspectRecord,
) -> Result<(CheckResult, Option<NewScreening>), JobOutcome> {
    let prospect = record.prospect().map_err(|e| JobOutcome::Fail(e.to_string()))?;
    let result = match check {
        Check::Personal => checks::personal(&prospect),
        Check::Address => checks::address(&prospect),
        Check::Email => checks::email(&prospect),
        Check::Phone => checks::phone(&prospect),
        // Not a validator: its result arrives from the KYC provider (`core::kyc`).
        Check::Kyc => return Err(JobOutcome::Fail("the KYC check has no validator job".into())),
        Check::Sanctions => {
            let query = sanctions::person_query(
                prospect.full_name(),
                prospect.date_of_birth.map(DateOfBirth::date),
                prospect.country.map(|c| c.as_str().to_owned()),
            );
            let (partner, user) = (PartnerId::new(record.partner_id).ok(), UserId::new(record.id).ok());
            let (screening, row) = match sanctions.screen_person(&query, lists, "cip:sanctions", partner, user) {
                Ok(screened) => screened,
                // Never pass a person unscreened: without a list, wait for one.
                Err(err) => return Err(JobOutcome::Retry(err.to_string())),
            };
            let outcome = match screening.decision {
                Decision::Match => Outcome::Fail,
                Decision::Review => Outcome::Review,
                Decision::Clear => Outcome::Pass,
            };
            let reason = match screening.matches.first() {
                Some(top) if outcome != Outcome::Pass => format!(
                    "{} list {}: {} {} score {:.3} ({})",
                    top.list,
                    top.list_version,
                    top.decision.as_str(),
                    top.entity_id,
                    top.score,
                    top.reasons.join("; ")
                ),
                _ => {
                    let lists: Vec<String> =
                        screening.lists.iter().map(|l| format!("{} {}", l.list, l.version)).collect();
                    format!("clear against lists {}", lists.join(", "))
                }
            };
            return Ok((CheckResult { check, outcome, reason }, Some(row)));
        }
    };
    Ok((result, None))
}

async fn provision(store: &Store, job: ClaimedJob) -> JobOutcome {
    let (payload, partner) = match payload(&job) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    match onboarding::finish_provisioning(store, job, payload.user_id, partner, now_ms()).await {
        Ok(Some(true)) => {
            metrics::counter!("cip_accounts_opened_total").increment(1);
            JobOutcome::Committed
        }
        Ok(_) => JobOutcome::Committed,
        Err(err) => JobOutcome::Retry(err.to_string()),
    }
}
