//! Onboarding (seed 002's CIP machine, DESIGN.md §3): registration, the validators' results,
//! provisioning, corrections, consents and compliance decisions. Each public function is one use
//! case and one atomic write. The rules live here and nowhere else: which state a set of results
//! decides and the reason recorded with it, which checks a correction runs again, and what a
//! compliance decision writes to the audit log.

use super::audit::{self, Action};
use crate::domain::cip::{self, Check, CheckResult, CipState, Detail, Outcome, Status, Transition};
use crate::domain::prospect::Prospect;
use crate::domain::{PartnerId, PublicUserId, UserId};
use crate::store::checks::{self, OnConflict};
use crate::store::{
    ClaimedJob, Duplicate, NewJob, NewProspect, NewScreening, ProspectRecord, Store, StoreError, StoreResult, Tx,
    Whose, boxed, console, events, jobs, pin_unit, prospects, sanctions,
};

/// The job kind that opens the account once every check passed.
pub const PROVISION_JOB: &str = "cip.provision";

/// Why a CIP move was refused.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("no such user")]
    NotFound,
    #[error("the user is {0}")]
    WrongState(String),
    #[error("{0:?} is already registered")]
    Duplicate(Duplicate),
    #[error("the correction changes nothing")]
    NothingChanged,
    #[error("the identity was verified against a document: names and date of birth cannot change")]
    IdentityVerified,
    #[error("identity verification is not configured for this partner")]
    KycNotConfigured,
    /// Another reviewer opened the case in the console and their hold has not expired.
    #[error("the case is held by {by} until {}", crate::domain::rfc3339(*.until))]
    Held { by: String, until: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The validation jobs of one generation of a registration.
pub fn check_jobs(partner: PartnerId, user: i64, generation: i64, checks: &[Check], now: i64) -> Vec<NewJob> {
    checks.iter().map(|check| user_job(check.job_kind(), Some(partner), user, generation, now)).collect()
}

/// A job about one generation of a user's data, enqueued once per generation.
fn user_job(kind: &str, partner: Option<PartnerId>, user: i64, generation: i64, now: i64) -> NewJob {
    let mut job = NewJob::new(kind, serde_json::json!({ "userId": user, "generation": generation }), now)
        .dedupe(format!("{kind}:{user}:{generation}"));
    job.partner = partner;
    job
}

/// Registers a prospect in `UpgradeInProgress/None` with its first event and one validation job
/// per check. A duplicate phone or e-mail of the partner is `StoreError::Conflict` (see
/// `Duplicate::of`).
pub async fn register(
    store: &Store,
    partner: PartnerId,
    public_id: PublicUserId,
    prospect: Prospect,
    actor: String,
    now: i64,
) -> StoreResult<UserId> {
    // Read before the write, on a reader: on SQLite every statement inside a write holds the one
    // writer (reading it inside cost 8 % of seed 002's acceptance rate, BENCHMARKS.md). The
    // setting is the one in force when the prospect registers.
    let kyc_required = store.kyc_required_for_prospects(partner).await?;
    let new = NewProspect { partner, public_id, prospect, state: CipState::ACCEPTED, kyc_required, created_at: now };
    store
        .write(move |mut tx| {
            pin_unit(async move {
                let id = prospects::insert(&mut tx, &new).await?;
                let accepted =
                    Transition::new(None, new.state, "accepted", actor).expect("a first state is always legal");
                events::append(&mut tx, id, partner.get(), &accepted, now).await?;
                for job in check_jobs(partner, id, 0, &Check::ALL, now) {
                    jobs::enqueue(&mut tx, &job, now).await?;
                }
                UserId::new(id).map_err(|_| StoreError::Corrupt(format!("user id {id} out of range")))
            })
        })
        .await
}

/// Whose check a result is: the user, its partner, and the generation of its data.
#[derive(Debug, Clone, Copy)]
pub struct CheckTarget {
    pub user: i64,
    pub partner: i64,
    pub generation: i64,
}

/// Records one validator's result (and its screening, for the sanctions check) and completes
/// its job, atomically; when it was the last check of the generation, decides the user's next
/// state in the same write. `None` when the job's lease was lost (nothing written). A result for
/// an older generation (the user corrected the data meanwhile) is dropped.
pub async fn finish_check(
    store: &Store,
    job: ClaimedJob,
    target: CheckTarget,
    result: CheckResult,
    screening: Option<NewScreening>,
    now: i64,
) -> Result<Option<Option<CipState>>, MoveError> {
    store
        .write(move |mut tx| boxed(async move { record_check(&mut tx, &job, target, &result, screening, now).await }))
        .await
}

async fn record_check(
    tx: &mut Tx<'_>,
    job: &ClaimedJob,
    target: CheckTarget,
    result: &CheckResult,
    screening: Option<NewScreening>,
    now: i64,
) -> Result<Option<Option<CipState>>, MoveError> {
    let CheckTarget { user, partner, generation } = target;
    if !jobs::complete(tx, job, false, now).await? {
        return Ok(None);
    }
    let Some(record) = prospects::lock(tx, Whose::Id { user, partner }).await? else { return Ok(Some(None)) };
    if record.cip_generation != generation {
        return Ok(Some(None));
    }
    if let Some(screening) = &screening {
        sanctions::insert_screening(tx, screening).await?;
    }
    checks::record(tx, user, generation, result, OnConflict::Keep, now).await?;
    // Only a registration still being validated is decided here; one that moved on (a
    // compliance case cleared early, say) keeps its state.
    if record.cip_state()? != Some(CipState::ACCEPTED) {
        return Ok(Some(None));
    }
    Ok(Some(decide(tx, &record, "validated", "cip:validators", now).await?))
}

/// `AccountUpgradeInProgress` → `Completed` (the `cip.provision` job), with the job's
/// completion. `None` when the lease was lost; `Some(false)` when the user had moved on.
pub async fn finish_provisioning(
    store: &Store,
    job: ClaimedJob,
    user: i64,
    partner: i64,
    now: i64,
) -> Result<Option<bool>, MoveError> {
    store
        .write(move |mut tx| {
            boxed(async move {
                if !jobs::complete(&mut tx, &job, false, now).await? {
                    return Ok(None);
                }
                let Some(record) = prospects::lock(&mut tx, Whose::Id { user, partner }).await? else {
                    return Ok(Some(false));
                };
                if record.cip_state()? != Some(CipState::PROVISIONING) {
                    return Ok(Some(false));
                }
                super::billing::open_primary_account(&mut tx, &record, now).await?;
                move_to(&mut tx, &record, CipState::COMPLETED, "account opened".into(), "cip:provisioning", now)
                    .await?;
                Ok::<_, MoveError>(Some(true))
            })
        })
        .await
}

/// A corrected registration: the partner's user and its data as corrected.
#[derive(Debug, Clone)]
pub struct Correction {
    pub user: PublicUserId,
    pub partner: PartnerId,
    pub prospect: Prospect,
    pub actor: String,
}

/// Replaces a soft-failed registration with its corrected version: a new generation of its
/// data, the passed results of checks the correction does not touch carried over, and the other
/// checks run again.
pub async fn correct(store: &Store, correction: Correction, now: i64) -> Result<CipState, MoveError> {
    store.write(move |mut tx| boxed(async move { apply_correction(&mut tx, &correction, now).await })).await
}

pub(super) async fn apply_correction(tx: &mut Tx<'_>, c: &Correction, now: i64) -> Result<CipState, MoveError> {
    let whose = Whose::Public { user: c.user.as_str(), partner: c.partner };
    let record = prospects::lock(tx, whose).await?.ok_or(MoveError::NotFound)?;
    // Compared with the locked row, so a concurrent correction cannot slip in between.
    let changed_fields = record.prospect()?.changed_fields(&c.prospect);
    if changed_fields.is_empty() {
        return Err(MoveError::NothingChanged);
    }
    let from = record.cip_state()?;
    if from.map(|s| s.status) != Some(Status::UpgradeSoftFailed) {
        return Err(MoveError::WrongState(from.map_or("not in onboarding".into(), |s| s.to_string())));
    }
    let old = checks::results(tx, record.id, record.cip_generation).await?;
    // A passed KYC review verified these very names and date of birth: a change would carry
    // the pass over to an identity no document was checked for.
    let verified = old.iter().any(|r| r.check == Check::Kyc && matches!(r.outcome, Outcome::Pass | Outcome::Cleared));
    if verified && changed_fields.iter().any(|f| Check::affected_by(f).contains(&Check::Kyc)) {
        return Err(MoveError::IdentityVerified);
    }
    let generation = record.cip_generation + 1;
    let rerun = checks_to_rerun(&old, &changed_fields);
    prospects::update(tx, record.id, &c.prospect, generation)
        .await
        .map_err(|e| Duplicate::of(&e).map_or(MoveError::Store(e), MoveError::Duplicate))?;
    for kept in old.iter().filter(|r| !rerun.contains(&r.check)) {
        checks::record(tx, record.id, generation, kept, OnConflict::Keep, now).await?;
    }
    let reason = format!("corrected: {}", changed_fields.join(", "));
    let to = move_to(tx, &record, CipState::ACCEPTED, reason, &c.actor, now).await?;
    for job in check_jobs(c.partner, record.id, generation, &rerun, now) {
        jobs::enqueue(tx, &job, now).await?;
    }
    Ok(to)
}

/// The checks a correction runs again: those the changed fields affect, and every check that
/// had not passed.
pub fn checks_to_rerun(old: &[CheckResult], changed_fields: &[&str]) -> Vec<Check> {
    let stale: Vec<Check> = changed_fields.iter().flat_map(|f| Check::affected_by(f)).copied().collect();
    let passed = |c: Check| old.iter().any(|r| r.check == c && r.outcome == Outcome::Pass);
    Check::ALL.into_iter().filter(|c| stale.contains(c) || !passed(*c)).collect()
}

/// A compliance officer's decision on an open case.
#[derive(Debug, Clone)]
pub struct CaseDecision {
    pub user: String,
    pub clear: bool,
    /// Why, for the audit log and the user's timeline.
    pub reason: String,
    pub actor: String,
}

/// Decides a compliance case: `clear` puts the user back on track (on to the state the other
/// checks decide, or back to validation while some still run); otherwise the user is blocked
/// (`UpgradeFailed/ComplianceBlocked`). The decision and its audit entry are one write.
pub async fn decide_case(store: &Store, decision: CaseDecision, now: i64) -> Result<CipState, MoveError> {
    store.write(move |mut tx| boxed(async move { apply_case_decision(&mut tx, &decision, now).await })).await
}

async fn apply_case_decision(tx: &mut Tx<'_>, d: &CaseDecision, now: i64) -> Result<CipState, MoveError> {
    let record = prospects::lock(tx, Whose::AnyPartner(&d.user)).await?.ok_or(MoveError::NotFound)?;
    let from = record.cip_state()?;
    if from != Some(CipState::COMPLIANCE) {
        let mut state = from.map_or("not in onboarding".into(), |s| s.to_string());
        // A reviewer whose colleague got there first learns who decided, and when.
        let decisions = [Action::ComplianceClear.as_str(), Action::ComplianceBlock.as_str()];
        if let Some(last) = console::decision_since_opened(tx, &d.user, record.id, decisions).await? {
            let verb = if last.action == Action::ComplianceClear.as_str() { "cleared" } else { "blocked" };
            state = format!("{state}; {verb} by {} at {}", last.actor, crate::domain::rfc3339(last.at));
        }
        return Err(MoveError::WrongState(state));
    }
    // A hold keeps staff from deciding over each other's shoulder; the CLI (shell access to the
    // service, audited as `cli:…`) is the break-glass path and is not held back.
    if let Some(hold) = console::case_hold(tx, &d.user, now).await?
        && hold.holder != d.actor
        && d.actor.starts_with("staff:")
    {
        return Err(MoveError::Held { by: hold.holder, until: hold.expires_at });
    }
    console::release_case(tx, &d.user).await?;
    let (action, to) = if d.clear {
        // What is under review: a possible sanctions match, a KYC review on hold, or both.
        let results = checks::results(tx, record.id, record.cip_generation).await?;
        let mut reviewed: Vec<Check> =
            results.iter().filter(|r| r.outcome == Outcome::Review).map(|r| r.check).collect();
        if reviewed.is_empty() {
            reviewed.push(Check::Sanctions);
        }
        if reviewed.contains(&Check::Sanctions) {
            remember_cleared(tx, record.id, &d.actor, now).await?;
        }
        for check in reviewed {
            let cleared = CheckResult {
                check,
                outcome: Outcome::Cleared,
                reason: format!("cleared by {}: {}", d.actor, d.reason),
            };
            checks::record(tx, record.id, record.cip_generation, &cleared, OnConflict::Replace, now).await?;
        }
        let why = format!("compliance cleared: {}", d.reason);
        let to = match decide(tx, &record, &why, &d.actor, now).await? {
            Some(to) => to,
            None => move_to(tx, &record, CipState::ACCEPTED, why, &d.actor, now).await?,
        };
        (Action::ComplianceClear, to)
    } else {
        let blocked = CipState::new(Status::UpgradeFailed, Detail::ComplianceBlocked);
        let reason = format!("compliance blocked: {}", d.reason);
        (Action::ComplianceBlock, move_to(tx, &record, blocked, reason, &d.actor, now).await?)
    };
    let detail = serde_json::json!({ "reason": d.reason, "to": to.to_string() });
    audit::record(tx, &d.actor, action, Some(&d.user), detail, now).await?;
    Ok(to)
}

/// Remembers which listed entries the officer cleared the user of: the candidates of the user's
/// newest screening (the evidence the case shows), each with its entry's fingerprint, so that
/// re-screening against a later list does not reopen the case while those entries are unchanged.
async fn remember_cleared(tx: &mut Tx<'_>, user: i64, actor: &str, now: i64) -> Result<(), MoveError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Listed {
        // The candidate's own list version; screenings recorded before there were several
        // lists name none: theirs is the screening's.
        list_version: Option<i64>,
        entity_id: i64,
        decision: String,
        // Absent in screenings recorded before clearances were remembered: nothing to tie to.
        fingerprint: Option<String>,
    }
    let Some((list_id, matches)) = sanctions::latest_user_screening(tx, user).await? else {
        return Ok(());
    };
    let listed: Vec<Listed> = serde_json::from_str(&matches)
        .map_err(|e| StoreError::Corrupt(format!("screening candidates of user {user}: {e}")))?;
    for entry in listed.into_iter().filter(|l| l.decision != "clear") {
        if let Some(fingerprint) = entry.fingerprint {
            let cleared = sanctions::ClearedMatch { user_id: user, entity_id: entry.entity_id, fingerprint };
            let list = entry.list_version.unwrap_or(list_id);
            sanctions::insert_cleared_match(tx, &cleared, list, actor, now).await?;
        }
    }
    Ok(())
}

/// Decides a locked record whose checks are all in; `None` while some are still running. The
/// event's reason names every check that did not pass, with the validator's own reason.
pub(super) async fn decide(
    tx: &mut Tx<'_>,
    record: &ProspectRecord,
    reason: &str,
    actor: &str,
    now: i64,
) -> Result<Option<CipState>, MoveError> {
    let results = checks::results(tx, record.id, record.cip_generation).await?;
    let required = Check::required(record.kyc_required);
    if !required.iter().all(|c| results.iter().any(|r| r.check == *c)) {
        return Ok(None);
    }
    let consents = prospects::consents(tx, record).await?;
    let to = cip::decide(&results, consents);
    let why: Vec<String> = results
        .iter()
        .filter(|r| r.outcome != Outcome::Pass)
        .map(|r| format!("{}: {}", r.check.as_str(), r.reason))
        .collect();
    let reason = if why.is_empty() { reason.to_owned() } else { format!("{reason}; {}", why.join("; ")) };
    Ok(Some(move_to(tx, record, to, reason, actor, now).await?))
}

/// Moves a locked record to `to` (when that is a move), appends the event, and enqueues the
/// provisioning job when the account is to be opened. Returns the state the user is in after.
pub(super) async fn move_to(
    tx: &mut Tx<'_>,
    record: &ProspectRecord,
    to: CipState,
    reason: String,
    actor: &str,
    now: i64,
) -> Result<CipState, MoveError> {
    let from = record.cip_state()?;
    if from == Some(to) {
        return Ok(to);
    }
    let transition = Transition::new(from, to, reason, actor).map_err(|e| MoveError::WrongState(e.to_string()))?;
    // The row is locked, so the state read is the state moved from.
    if !events::transition(tx, record.id, record.partner_id, &transition, now).await? {
        let was = transition.from.map_or_else(String::new, |s| s.to_string());
        return Err(MoveError::WrongState(format!("no longer {was}")));
    }
    if to == CipState::PROVISIONING {
        let partner = PartnerId::new(record.partner_id).ok();
        let mut job = user_job(PROVISION_JOB, partner, record.id, record.cip_generation, now);
        // Once per entry into provisioning, not per generation: a customer whose opened account
        // went to compliance and was cleared is provisioned again (a finished job's row, and
        // with it its dedupe key, is kept for `jobs.keep_done_hours`; the entry time makes the
        // key unique without it).
        job.dedupe_key = Some(format!("{PROVISION_JOB}:{}:{}:{now}", record.id, record.cip_generation));
        jobs::enqueue(tx, &job, now).await?;
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(check: Check, outcome: Outcome) -> CheckResult {
        CheckResult { check, outcome, reason: String::new() }
    }

    #[test]
    fn a_correction_reruns_what_it_touches_and_what_had_not_passed() {
        let old = vec![
            result(Check::Personal, Outcome::Pass),
            result(Check::Address, Outcome::Soft(Detail::InvalidAddress)),
            result(Check::Email, Outcome::Pass),
            result(Check::Phone, Outcome::Pass),
            result(Check::Sanctions, Outcome::Pass),
        ];
        assert_eq!(checks_to_rerun(&old, &["street"]), vec![Check::Address]);
        let rerun = checks_to_rerun(&old, &["email"]);
        assert!(rerun.contains(&Check::Address) && rerun.contains(&Check::Email), "{rerun:?}");
        assert!(!rerun.contains(&Check::Phone), "{rerun:?}");
        // A check with no result at all runs again too.
        assert_eq!(checks_to_rerun(&old[..4], &[]), vec![Check::Address, Check::Sanctions]);
    }
}
