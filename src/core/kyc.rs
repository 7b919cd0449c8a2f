//! Identity verification (seed 003 step 3): the user's profile entering CIP, a partner's KYC
//! settings, the applicant at the provider, and what each provider event does to CIP. The
//! provider calls themselves happen outside any transaction (the `kyc` module); what they answer is
//! written here, one atomic write per use case.
//!
//! Ordering: the provider retries deliveries and does not keep their order, so each event
//! applies only when it is newer (`createdAtMs`) than the last one applied to the applicant; a
//! delivery seen before (the same body) changes nothing. A late `applicantPending` therefore
//! never undoes a review.

use secrecy::{ExposeSecret, SecretString};

use super::audit::{self, Action};
use super::onboarding::{self, Correction, MoveError, check_jobs, decide, move_to};
use crate::domain::cip::{Check, CheckResult, CipState, Outcome, Status, Transition};
use crate::domain::kyc::{EventKind, KycEvent, ProviderKind};
use crate::domain::prospect::Prospect;
use crate::domain::{Environment, Partner, PartnerId, PublicUserId};
use crate::kek::Kek;
use crate::store::checks::{self, OnConflict};
use crate::store::kyc::{self as repo, ApplicantRecord, ApplicantUpdate, NewKycWebhook, PartnerKycRecord};
use crate::store::{
    ClaimedJob, Duplicate, NewJob, ProspectRecord, Store, StoreError, StoreResult, Tx, Whose, boxed, events, jobs,
    pin_unit, prospects,
};

/// A seed-003 user's profile (seed 002's person fields, the sign-up e-mail kept).
#[derive(Debug, Clone)]
pub struct Profile {
    pub user: PublicUserId,
    pub partner: PartnerId,
    pub prospect: Prospect,
    pub actor: String,
}

/// Stores the profile and puts the user into CIP (`UpgradeInProgress/None`, the validators
/// enqueued, KYC required); a user whose CIP soft-failed corrects it instead (the checks the
/// change touches run again). Any other state is `MoveError::WrongState`.
pub async fn submit_profile(store: &Store, profile: Profile, now: i64) -> Result<CipState, MoveError> {
    store.write(move |mut tx| boxed(async move { enter_cip(&mut tx, profile, now).await })).await
}

async fn enter_cip(tx: &mut Tx<'_>, p: Profile, now: i64) -> Result<CipState, MoveError> {
    let whose = Whose::Public { user: p.user.as_str(), partner: p.partner };
    let record = prospects::lock(tx, whose).await?.ok_or(MoveError::NotFound)?;
    match record.cip_state()? {
        None => {}
        Some(state) if state.status == Status::UpgradeSoftFailed => {
            let correction = Correction { user: p.user, partner: p.partner, prospect: p.prospect, actor: p.actor };
            return onboarding::apply_correction(tx, &correction, now).await;
        }
        Some(state) => return Err(MoveError::WrongState(state.to_string())),
    }
    // Entering CIP makes KYC a requirement: without a provider the user could never meet it.
    if !repo::available(tx, p.partner).await? {
        return Err(MoveError::KycNotConfigured);
    }
    prospects::update(tx, record.id, &p.prospect, record.cip_generation)
        .await
        .map_err(|e| Duplicate::of(&e).map_or(MoveError::Store(e), MoveError::Duplicate))?;
    prospects::require_kyc(tx, record.id).await?;
    let entered = Transition::new(None, CipState::ACCEPTED, "profile submitted", p.actor.as_str())
        .expect("a first state is always legal");
    if !events::transition(tx, record.id, record.partner_id, &entered, now).await? {
        return Err(MoveError::WrongState("no longer outside CIP".into()));
    }
    for job in check_jobs(p.partner, record.id, record.cip_generation, &Check::ALL, now) {
        jobs::enqueue(tx, &job, now).await?;
    }
    Ok(CipState::ACCEPTED)
}

/// A partner's KYC settings as an operator sets them. A secret left `None` keeps the stored one.
#[derive(Debug, Clone)]
pub struct KycConfig {
    pub provider: ProviderKind,
    pub level_name: String,
    pub required_for_prospects: bool,
    pub app_token: Option<SecretString>,
    pub secret_key: Option<SecretString>,
    pub webhook_secret: Option<SecretString>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no such partner")]
    NoPartner,
    #[error("a live partner's provider secrets need a configured key-encryption key (secrets.kek or secrets.kek_file)")]
    NeedsKek,
    #[error("live partners verify with a real provider, not the sandbox simulation")]
    SandboxForLive,
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a sealed secret lives: its associated data binds it to that column and partner.
pub fn secret_aad(column: &str, partner: i64) -> String {
    format!("partner_kyc.{column}:{partner}")
}

/// Sets a partner's KYC settings, secrets sealed under the KEK; audited (without the secrets)
/// in the same write.
pub async fn configure(
    store: &Store,
    kek: &Kek,
    partner: &Partner,
    config: KycConfig,
    actor: &str,
    now: i64,
) -> Result<(), ConfigError> {
    let live = partner.environment == Environment::Live;
    if live && !kek.is_configured() {
        return Err(ConfigError::NeedsKek);
    }
    if live && config.provider == ProviderKind::Sandbox {
        return Err(ConfigError::SandboxForLive);
    }
    let level = config.level_name.trim();
    if level.is_empty() || level.len() > 200 || level.chars().any(char::is_control) {
        return Err(ConfigError::Invalid("the level name must be 1 to 200 printable characters"));
    }
    let blank = |secret: &Option<SecretString>| secret.as_ref().is_some_and(|s| s.expose_secret().trim().is_empty());
    if blank(&config.app_token) || blank(&config.secret_key) {
        return Err(ConfigError::Invalid("the app token and secret key must not be empty"));
    }
    // Anyone who can guess the webhook secret can approve identities: a short one is refused.
    if config.webhook_secret.as_ref().is_some_and(|s| s.expose_secret().len() < 16) {
        return Err(ConfigError::Invalid("the webhook secret must be at least 16 characters"));
    }
    let id = partner.id.get();
    let seal = |column: &str, secret: &Option<SecretString>| {
        secret.as_ref().map(|s| kek.seal(&secret_aad(column, id), s.expose_secret().as_bytes()))
    };
    let sealed = (seal("app_token", &config.app_token), seal("secret_key", &config.secret_key));
    let webhook = seal("webhook_secret", &config.webhook_secret);
    let (level, actor) = (level.to_owned(), actor.to_owned());
    store
        .write(move |mut tx| {
            boxed(async move {
                let stored = repo::partner_in(&mut tx, id).await?;
                let keep = |new: Option<Vec<u8>>, old: Option<Vec<u8>>| new.or(old);
                let app_token = keep(sealed.0, stored.as_ref().and_then(|s| s.app_token.clone()));
                let secret_key = keep(sealed.1, stored.as_ref().and_then(|s| s.secret_key.clone()));
                let webhook_secret = keep(webhook, stored.as_ref().map(|s| s.webhook_secret.clone()))
                    .ok_or(ConfigError::Missing("the webhook secret"))?;
                if config.provider == ProviderKind::Sumsub && (app_token.is_none() || secret_key.is_none()) {
                    return Err(ConfigError::Missing("Sumsub's app token and secret key"));
                }
                if !crate::store::partners::exists(&mut tx, partner_id(id)?).await? {
                    return Err(ConfigError::NoPartner);
                }
                let record = PartnerKycRecord {
                    partner_id: id,
                    provider: config.provider.as_str().to_owned(),
                    level_name: level.clone(),
                    required_for_prospects: config.required_for_prospects,
                    app_token,
                    secret_key,
                    webhook_secret,
                    updated_at: now,
                };
                repo::upsert_partner(&mut tx, &record).await?;
                let changed: Vec<&str> = [
                    config.app_token.as_ref().map(|_| "appToken"),
                    config.secret_key.as_ref().map(|_| "secretKey"),
                    config.webhook_secret.as_ref().map(|_| "webhookSecret"),
                ]
                .into_iter()
                .flatten()
                .collect();
                let detail = serde_json::json!({
                    "provider": config.provider.as_str(),
                    "levelName": level,
                    "requiredForProspects": config.required_for_prospects,
                    "secretsChanged": changed,
                });
                audit::record(&mut tx, &actor, Action::PartnerKycConfigure, Some(&id.to_string()), detail, now).await?;
                Ok(())
            })
        })
        .await
}

fn partner_id(id: i64) -> StoreResult<PartnerId> {
    PartnerId::new(id).map_err(|_| StoreError::Corrupt(format!("partner id {id} out of range")))
}

/// A sandbox partner's settings on first use when it has none: the built-in simulation with a
/// fresh webhook secret (sealed). The stored settings either way.
pub async fn sandbox_defaults(
    store: &Store,
    kek: &Kek,
    partner: PartnerId,
    level: &str,
    now: i64,
) -> StoreResult<PartnerKycRecord> {
    let secret = crate::auth::credentials::random_token(32);
    let record = PartnerKycRecord {
        partner_id: partner.get(),
        provider: ProviderKind::Sandbox.as_str().to_owned(),
        level_name: level.to_owned(),
        required_for_prospects: false,
        app_token: None,
        secret_key: None,
        webhook_secret: kek.seal(&secret_aad("webhook_secret", partner.get()), secret.as_bytes()),
        updated_at: now,
    };
    store.write(move |mut tx| pin_unit(async move { repo::insert_partner_if_absent(&mut tx, &record).await })).await
}

/// Records the user's applicant at the provider unless it has one, with `follow_ups` (the
/// reconciliation job, the sandbox's simulated review) when it is new. The stored applicant.
pub async fn open_applicant(
    store: &Store,
    user: i64,
    partner: PartnerId,
    applicant_id: String,
    level_name: String,
    follow_ups: Vec<NewJob>,
    now: i64,
) -> StoreResult<ApplicantRecord> {
    store
        .write(move |mut tx| {
            pin_unit(async move {
                let stored =
                    repo::insert_applicant(&mut tx, user, partner.get(), &applicant_id, &level_name, now).await?;
                // Also when a webhook recorded the applicant first: the jobs' dedupe keys make a
                // second enqueue a no-op.
                for job in &follow_ups {
                    jobs::enqueue(&mut tx, job, now).await?;
                }
                Ok(stored)
            })
        })
        .await
}

/// Enqueues `jobs` (a resubmission's simulated review, say) in one write.
pub async fn enqueue(store: &Store, new: Vec<NewJob>, now: i64) -> StoreResult<()> {
    store
        .write(move |mut tx| {
            pin_unit(async move {
                for job in &new {
                    jobs::enqueue(&mut tx, job, now).await?;
                }
                Ok(())
            })
        })
        .await
}

/// Completes a reconciliation job and schedules its next round, in one write.
pub async fn reschedule(store: &Store, job: ClaimedJob, next: Option<NewJob>, now: i64) -> StoreResult<bool> {
    store
        .write(move |mut tx| {
            pin_unit(async move {
                if !jobs::complete(&mut tx, &job, false, now).await? {
                    return Ok(false);
                }
                if let Some(next) = &next {
                    jobs::enqueue(&mut tx, next, now).await?;
                }
                Ok(true)
            })
        })
        .await
}

/// An authenticated provider event, with what is stored of it.
#[derive(Debug, Clone)]
pub struct Received {
    pub partner: i64,
    /// The partner's user the event names (none: stored and ignored).
    pub user: Option<i64>,
    pub event: KycEvent,
    /// Enqueued when the event is applied (the reconciliation a resubmission restarts).
    pub follow_ups: Vec<NewJob>,
    /// The job that delivered it (a reconciliation or a sandbox review), completed in the same
    /// write: a job that lost its lease writes nothing.
    pub job: Option<ClaimedJob>,
    /// `webhook`, `reconciliation` or `sandbox`.
    pub source: &'static str,
    pub raw_body: String,
    pub body_sha256: Vec<u8>,
    /// How the digest was verified (`HMAC_SHA256_HEX`…), or `api` for a status the provider's
    /// API answered.
    pub digest_alg: String,
}

/// What an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// This very delivery was received before.
    Duplicate,
    /// Older than the last event applied to the applicant.
    Stale,
    /// A type Onboard does not act on, or about a user it cannot act on.
    Ignored,
    /// Stored on the applicant; the user's CIP did not move.
    Recorded,
    /// The user's CIP moved to this state.
    Moved(CipState),
}

impl Effect {
    pub fn label(self) -> &'static str {
        match self {
            Effect::Duplicate => "duplicate",
            Effect::Stale => "stale",
            Effect::Ignored => "ignored",
            Effect::Recorded => "recorded",
            Effect::Moved(_) => "moved",
        }
    }
}

/// Applies one provider event to the user's CIP and stores it, in one write.
pub async fn apply_event(store: &Store, received: Received, now: i64) -> Result<Effect, MoveError> {
    store.write(move |mut tx| boxed(async move { apply(&mut tx, &received, now).await })).await
}

async fn apply(tx: &mut Tx<'_>, r: &Received, now: i64) -> Result<Effect, MoveError> {
    if let Some(job) = &r.job
        && !jobs::complete(tx, job, false, now).await?
    {
        return Ok(Effect::Duplicate);
    }
    if repo::webhook_seen(tx, r.partner, &r.body_sha256).await? {
        return Ok(Effect::Duplicate);
    }
    let record = match r.user {
        Some(user) => prospects::lock(tx, Whose::Id { user, partner: r.partner }).await?,
        None => None,
    };
    let effect = match &record {
        Some(record) => event_effect(tx, record, &r.event, r.source, now).await?,
        None => Effect::Ignored,
    };
    let stored = NewKycWebhook {
        partner_id: r.partner,
        user_id: record.as_ref().map(|r| r.id),
        source: r.source,
        type_name: r.event.type_name.clone(),
        applicant_id: r.event.applicant_id.clone(),
        created_at_ms: r.event.created_at_ms,
        body_sha256: r.body_sha256.clone(),
        raw_body: r.raw_body.clone(),
        digest_alg: r.digest_alg.clone(),
        effect: match effect {
            Effect::Moved(to) => format!("moved to {to}"),
            other => other.label().to_owned(),
        },
        received_at: now,
    };
    if !repo::insert_webhook(tx, &stored).await? {
        // The same body raced in on another connection and won: this copy changes nothing.
        return Err(MoveError::WrongState("a concurrent delivery of this webhook was applied".into()));
    }
    if matches!(effect, Effect::Recorded | Effect::Moved(_)) {
        for job in &r.follow_ups {
            jobs::enqueue(tx, job, now).await?;
        }
    }
    Ok(effect)
}

async fn event_effect(
    tx: &mut Tx<'_>,
    record: &ProspectRecord,
    event: &KycEvent,
    source: &str,
    now: i64,
) -> Result<Effect, MoveError> {
    let Some(kind) = event.kind else { return Ok(Effect::Ignored) };
    let applicant = match (repo::applicant_in(tx, record.id).await?, &event.applicant_id) {
        (Some(applicant), _) => applicant,
        // An applicant already recorded for another user (its external id changed at the
        // provider): not this user's verification.
        (None, Some(id)) if repo::applicant_owner(tx, record.partner_id, id).await?.is_some() => {
            return Ok(Effect::Ignored);
        }
        (None, Some(id)) => {
            let level = event.level_name.as_deref().unwrap_or("");
            repo::insert_applicant(tx, record.id, record.partner_id, id, level, now).await?
        }
        (None, None) => return Ok(Effect::Ignored),
    };
    // Another applicant or level of the same external user id is not the verification this
    // user's onboarding asked for.
    let other_applicant = event.applicant_id.as_deref().is_some_and(|id| id != applicant.applicant_id);
    let other_level = event
        .level_name
        .as_deref()
        .is_some_and(|level| !applicant.level_name.is_empty() && level != applicant.level_name);
    if other_applicant || other_level {
        return Ok(Effect::Ignored);
    }
    if kind == EventKind::Created || event.created_at_ms <= applicant.last_event_ms {
        return Ok(if kind == EventKind::Created { Effect::Recorded } else { Effect::Stale });
    }
    // The review already applied, arriving again by another path (a status reading, then its
    // webhook): the user already moved on it.
    if let Some(review) = event.review.as_ref().filter(|_| kind == EventKind::Reviewed)
        && applicant.review_status.as_deref() == Some("completed")
        && applicant.review_answer.as_deref() == Some(review.answer.as_str())
        && applicant.reject_type.as_deref() == review.reject_type.map(|t| t.as_str())
        && applicant.reject_labels.as_deref().unwrap_or("") == review.labels.join(",")
    {
        return Ok(Effect::Stale);
    }
    let held_before = applicant.review_status.as_deref() == Some("onHold");
    let actor = format!("kyc:{source}");
    let labels = event.review.as_ref().map(|r| r.labels.join(","));
    let implied = match kind {
        EventKind::Reviewed => "completed",
        EventKind::OnHold => "onHold",
        EventKind::Pending => "pending",
        EventKind::Created | EventKind::Reset => "init",
    };
    let mut update = ApplicantUpdate {
        review_status: Some(event.review_status.as_deref().unwrap_or(implied)),
        last_event_ms: event.created_at_ms,
        ..ApplicantUpdate::default()
    };
    let result = match kind {
        EventKind::Reviewed => {
            let Some(review) = &event.review else { return Ok(Effect::Ignored) };
            update.review_answer = Some(review.answer.as_str());
            update.reject_type = review.reject_type.map(|t| t.as_str());
            update.reject_labels = labels.filter(|l| !l.is_empty());
            Some(review.result())
        }
        EventKind::OnHold => Some(crate::domain::kyc::on_hold()),
        // Pending (documents submitted again) or reset: the next review decides.
        _ => None,
    };
    repo::update_applicant(tx, record.id, &update, now).await?;
    if let Some(review) = event.review.as_ref().filter(|_| kind == EventKind::Reviewed) {
        super::webhooks::kyc_reviewed(tx, record, review, now).await?;
    }
    let Some(state) = record.cip_state()?.filter(|_| record.kyc_required) else { return Ok(Effect::Recorded) };
    let previous = checks::results(tx, record.id, record.cip_generation).await?;
    let previous_kyc = previous.iter().find(|r| r.check == Check::Kyc).map(|r| r.outcome);
    let opened = state == CipState::PROVISIONING
        || state == CipState::COMPLETED
        || (state.status == Status::UpgradePending && events::ever_completed(tx, record.id).await?);
    let kyc = KycState { state, previous: previous_kyc, held_before, opened };
    match result {
        Some(result) => record_result(tx, record, kyc, result, &actor, now).await,
        None => {
            let reason = if kind == EventKind::Reset {
                "verification reset by the provider"
            } else {
                "identity documents resubmitted"
            };
            awaiting_review(tx, record, kyc, reason, &actor, now).await
        }
    }
}

/// Where the user was when a KYC event arrived, and the KYC result it had.
#[derive(Debug, Clone, Copy)]
struct KycState {
    state: CipState,
    previous: Option<Outcome>,
    /// The provider had the applicant on hold before this event.
    held_before: bool,
    /// The user's account was opened (it is, or was, `Completed`, or is being provisioned).
    opened: bool,
}

impl KycState {
    /// Soft-failed because of KYC (the user's next documents decide).
    fn soft_by_kyc(self) -> bool {
        self.state.status == Status::UpgradeSoftFailed && matches!(self.previous, Some(Outcome::Soft(_)))
    }
}

/// Pending or reset: the provider has documents to review again. A user being validated, or
/// soft-failed by KYC, waits for that review (the soft-failed go back to `UpgradeInProgress`);
/// in any other state the last result stands until the next review replaces it.
async fn awaiting_review(
    tx: &mut Tx<'_>,
    record: &ProspectRecord,
    kyc: KycState,
    reason: &str,
    actor: &str,
    now: i64,
) -> Result<Effect, MoveError> {
    if kyc.state != CipState::ACCEPTED && !kyc.soft_by_kyc() {
        return Ok(Effect::Recorded);
    }
    checks::remove(tx, record.id, record.cip_generation, Check::Kyc).await?;
    if !kyc.soft_by_kyc() {
        return Ok(Effect::Recorded);
    }
    Ok(Effect::Moved(move_to(tx, record, CipState::ACCEPTED, reason.to_owned(), actor, now).await?))
}

/// Records the KYC result and moves the user where it decides something: a user being
/// validated is decided once every check is in; one waiting (consents, a hold) or soft-failed by
/// KYC is decided again. A rejection or hold after the account was (being) opened is a
/// compliance case; an officer's clearance stands against the same hold reported again.
async fn record_result(
    tx: &mut Tx<'_>,
    record: &ProspectRecord,
    kyc: KycState,
    mut result: CheckResult,
    actor: &str,
    now: i64,
) -> Result<Effect, MoveError> {
    // The hold an officer cleared, reported again (a new hold after new documents is a new case).
    if kyc.previous == Some(Outcome::Cleared) && result.outcome == Outcome::Review && kyc.held_before {
        return Ok(Effect::Recorded);
    }
    if kyc.opened {
        // An opened account is never decided automatically again: anything but a pass is a case
        // for a reviewer, and while a case is open a pass does not close it.
        if result.outcome == Outcome::Pass {
            if kyc.state.status != Status::UpgradePending {
                checks::record(tx, record.id, record.cip_generation, &result, OnConflict::Replace, now).await?;
            }
            return Ok(Effect::Recorded);
        }
        result.outcome = Outcome::Review;
        result.reason = format!("{} after the account was opened", result.reason);
        checks::record(tx, record.id, record.cip_generation, &result, OnConflict::Replace, now).await?;
        let reason = format!("kyc: {}", result.reason);
        let to = move_to(tx, record, CipState::COMPLIANCE, reason, actor, now).await?;
        return Ok(if to == kyc.state { Effect::Recorded } else { Effect::Moved(to) });
    }
    checks::record(tx, record.id, record.cip_generation, &result, OnConflict::Replace, now).await?;
    let reason = format!("kyc: {}", result.reason);
    let record = if kyc.soft_by_kyc() {
        move_to(tx, record, CipState::ACCEPTED, "identity documents reviewed again".into(), actor, now).await?;
        &ProspectRecord {
            cip_status: Some(CipState::ACCEPTED.status.as_str().to_owned()),
            cip_detail: Some(CipState::ACCEPTED.detail.as_str().to_owned()),
            ..record.clone()
        }
    } else if kyc.state == CipState::ACCEPTED || kyc.state.status == Status::UpgradePending {
        record
    } else {
        return Ok(Effect::Recorded);
    };
    match decide(tx, record, &reason, actor, now).await? {
        Some(to) if to != kyc.state || kyc.soft_by_kyc() => Ok(Effect::Moved(to)),
        None if kyc.soft_by_kyc() => Ok(Effect::Moved(CipState::ACCEPTED)),
        _ => Ok(Effect::Recorded),
    }
}
