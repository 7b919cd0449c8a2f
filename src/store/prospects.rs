//! Seed-002 prospects: the registration and its validation jobs in one transaction, the results
//! of the validators, and every later move of the CIP machine (corrections, consents, compliance
//! decisions, provisioning). Each move locks the user's row first, so two validators finishing
//! at once on two nodes still decide exactly once.

use super::jobs::{ClaimedJob, NewJob, complete_in, enqueue_in};
use super::sanctions::{insert_screening_in, stored_cip_state, transition_in};
use super::staff::audit_in;
use super::{NewScreening, Store, StoreError, StoreResult};
use crate::domain::address::{Country, LatLng, PlaceDetail};
use crate::domain::cip::{self, Check, CheckResult, CipState, Consents, Outcome, Status, Transition};
use crate::domain::prospect::{Gender, Language, Prospect};
use crate::domain::{Email, PartnerId, Phone, PublicUserId, UserId};

/// The job kind that opens the account once every check passed.
pub const PROVISION_JOB: &str = "cip.provision";

/// A stored prospect, as the validators and the status endpoints read it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProspectRecord {
    pub id: i64,
    pub public_id: String,
    pub partner_id: i64,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub second_last_name: Option<String>,
    pub gender: Option<String>,
    pub date_of_birth: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub language: Option<String>,
    pub street: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
    pub place_detail: Option<String>,
    pub address_latitude: Option<f64>,
    pub address_longitude: Option<f64>,
    pub user_latitude: Option<f64>,
    pub user_longitude: Option<f64>,
    pub cip_status: Option<String>,
    pub cip_detail: Option<String>,
    pub cip_generation: i64,
    pub privacy_consent_at: Option<i64>,
    pub contract_consent_at: Option<i64>,
    pub created_at: i64,
}

macro_rules! prospect_columns {
    () => {
        "id, public_id, partner_id, first_name, middle_name, last_name, second_last_name, gender, date_of_birth,
         email, phone, language, street, city, state, country, place_detail, address_latitude, address_longitude,
         user_latitude, user_longitude, cip_status, cip_detail, cip_generation, privacy_consent_at,
         contract_consent_at, created_at"
    };
}

impl ProspectRecord {
    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupt(format!("user {}: {what}", self.id))
    }

    pub fn cip_state(&self) -> StoreResult<Option<CipState>> {
        stored_cip_state(self.id, self.cip_status.as_deref(), self.cip_detail.as_deref())
    }

    /// Reads the registration back into its domain form (stored values were validated on the
    /// way in; one that no longer parses is corrupt data, not a user error).
    pub fn prospect(&self) -> StoreResult<Prospect> {
        let required = |v: &Option<String>, what: &str| v.clone().ok_or_else(|| self.corrupt(what));
        let country = match &self.country {
            Some(c) => Some(Country::parse(c).ok_or_else(|| self.corrupt("country"))?),
            None => None,
        };
        let state = match (&self.state, country) {
            (Some(s), Some(c)) => Some(crate::domain::address::subdivision(c, s).ok_or_else(|| self.corrupt("state"))?),
            _ => None,
        };
        let place_detail = match &self.place_detail {
            Some(text) => {
                let json: serde_json::Value = serde_json::from_str(text).map_err(|_| self.corrupt("placeDetail"))?;
                Some((PlaceDetail::parse(&json).map_err(|_| self.corrupt("placeDetail"))?, json))
            }
            None => None,
        };
        let location = |lat: Option<f64>, lng: Option<f64>| lat.zip(lng).and_then(|(lat, lng)| LatLng::new(lat, lng));
        Ok(Prospect {
            first_name: required(&self.first_name, "first name")?,
            middle_name: self.middle_name.clone(),
            last_name: required(&self.last_name, "last name")?,
            second_last_name: self.second_last_name.clone(),
            gender: self.gender.as_deref().and_then(Gender::parse),
            date_of_birth: self.date_of_birth.as_deref().and_then(crate::sanctions::parse_date),
            email: self.email.as_deref().map(Email::parse).transpose().map_err(|_| self.corrupt("email"))?,
            phone: Phone::parse(&required(&self.phone, "phone")?).map_err(|_| self.corrupt("phone"))?,
            language: self.language.as_deref().and_then(Language::parse),
            street: self.street.clone(),
            city: self.city.clone(),
            state,
            country,
            place_detail,
            address_location: location(self.address_latitude, self.address_longitude),
            user_location: location(self.user_latitude, self.user_longitude),
        })
    }
}

/// Which unique rule a registration or correction broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    Phone,
    Email,
}

impl Duplicate {
    /// Reads the violated index from a conflict (PostgreSQL names the index, SQLite the columns).
    pub fn of(err: &StoreError) -> Option<Self> {
        match err {
            StoreError::Conflict(what) if what.contains("phone") => Some(Duplicate::Phone),
            StoreError::Conflict(what) if what.contains("email") => Some(Duplicate::Email),
            _ => None,
        }
    }
}

/// How a status endpoint finds a prospect of the calling partner.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    PublicId(&'a str),
    /// E.164.
    Phone(&'a str),
    /// `Prospect::email_key`.
    EmailKey(&'a str),
}

/// Why a CIP move was refused.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("no such user")]
    NotFound,
    #[error("the user is {0}")]
    WrongState(String),
    #[error("{0:?} is already registered")]
    Duplicate(Duplicate),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for MoveError {
    fn from(err: sqlx::Error) -> Self {
        MoveError::Store(err.into())
    }
}

/// An open compliance case: a user waiting in `UpgradePending/Compliance`, with the screening
/// that put it there.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceCase {
    #[serde(skip)]
    pub id: i64,
    #[serde(rename = "userId")]
    pub public_id: String,
    pub partner_id: i64,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub second_last_name: Option<String>,
    pub date_of_birth: Option<String>,
    pub country: Option<String>,
    pub list_id: Option<i64>,
    pub top_score: Option<f64>,
    /// The candidates of the latest screening, as JSON text.
    #[serde(skip)]
    pub matches: Option<String>,
    pub created_at: i64,
}

/// The validation jobs of one generation of a registration.
pub fn check_jobs(partner: PartnerId, user: i64, generation: i64, checks: &[Check], now: i64) -> Vec<NewJob> {
    checks
        .iter()
        .map(|check| {
            let mut job =
                NewJob::new(check.job_kind(), serde_json::json!({ "userId": user, "generation": generation }), now)
                    .dedupe(format!("{}:{user}:{generation}", check.job_kind()));
            job.partner = Some(partner);
            job
        })
        .collect()
}

fn provision_job(partner: i64, user: i64, generation: i64, now: i64) -> NewJob {
    let mut job = NewJob::new(PROVISION_JOB, serde_json::json!({ "userId": user, "generation": generation }), now)
        .dedupe(format!("{PROVISION_JOB}:{user}:{generation}"));
    job.partner = PartnerId::new(partner).ok();
    job
}

/// Locks the user's row for the rest of the transaction and reads it. The no-op `UPDATE` is the
/// portable row lock: PostgreSQL holds it to commit; SQLite has one writer anyway.
macro_rules! lock_prospect_in {
    ($conn:expr, $user:expr, $partner:expr) => {{
        let record: Option<ProspectRecord> = sqlx::query_as(concat!(
            "UPDATE users SET cip_generation = cip_generation WHERE id = $1 AND partner_id = $2 RETURNING ",
            prospect_columns!()
        ))
        .bind($user)
        .bind($partner)
        .fetch_optional(&mut *$conn)
        .await?;
        record
    }};
}

/// The consents the partner requires and the user gave.
macro_rules! consents_in {
    ($conn:expr, $record:expr) => {{
        let record: &ProspectRecord = $record;
        let required: String = sqlx::query_scalar("SELECT required_consents FROM partners WHERE id = $1")
            .bind(record.partner_id)
            .fetch_one(&mut *$conn)
            .await?;
        Consents {
            privacy_required: required.split(',').any(|c| c == "privacy"),
            contract_required: required.split(',').any(|c| c == "contract"),
            privacy_given: record.privacy_consent_at.is_some(),
            contract_given: record.contract_consent_at.is_some(),
        }
    }};
}

/// The check results of the record's current generation.
macro_rules! checks_in {
    ($conn:expr, $record:expr) => {{
        let record: &ProspectRecord = $record;
        let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT check_name, outcome, detail, reason FROM cip_checks WHERE user_id = $1 AND generation = $2",
        )
        .bind(record.id)
        .bind(record.cip_generation)
        .fetch_all(&mut *$conn)
        .await?;
        let mut results = Vec::with_capacity(rows.len());
        for (check, outcome, detail, reason) in rows {
            let check = Check::parse(&check).ok_or_else(|| record.corrupt("check name"))?;
            let outcome =
                Outcome::from_columns(&outcome, detail.as_deref()).ok_or_else(|| record.corrupt("outcome"))?;
            results.push(CheckResult { check, outcome, reason });
        }
        results
    }};
}

/// Moves a locked record to `to` (when that is a move), appends the event, and enqueues the
/// provisioning job when the account is to be opened. Returns the state the user is in after.
macro_rules! move_in {
    ($conn:expr, $record:expr, $to:expr, $reason:expr, $actor:expr, $now:expr) => {{
        let record: &ProspectRecord = $record;
        let to: CipState = $to;
        let from = record.cip_state()?;
        if from == Some(to) {
            to
        } else {
            let transition =
                Transition::new(from, to, $reason, $actor).map_err(|e| MoveError::WrongState(e.to_string()))?;
            // The row is locked, so the state read is the state moved from.
            if !transition_in!($conn, record.id, record.partner_id, &transition, $now) {
                return Err(MoveError::WrongState(format!(
                    "no longer {}",
                    transition.from.map_or_else(String::new, |s| s.to_string())
                )));
            }
            if to == CipState::PROVISIONING {
                enqueue_in!($conn, &provision_job(record.partner_id, record.id, record.cip_generation, $now), $now);
            }
            to
        }
    }};
}

/// Decides a locked record whose checks are all in. `None` while some are still running.
macro_rules! decide_in {
    ($conn:expr, $record:expr, $reason:expr, $actor:expr, $now:expr) => {{
        let record: &ProspectRecord = $record;
        let results = checks_in!($conn, record);
        if results.len() < Check::ALL.len() {
            None
        } else {
            let consents = consents_in!($conn, record);
            let to = cip::decide(&results, consents);
            let why = results
                .iter()
                .filter(|r| r.outcome != Outcome::Pass)
                .map(|r| format!("{}: {}", r.check.as_str(), r.reason))
                .collect::<Vec<_>>();
            let reason = if why.is_empty() { $reason.to_owned() } else { format!("{}; {}", $reason, why.join("; ")) };
            Some(move_in!($conn, record, to, reason, $actor, $now))
        }
    }};
}

/// Whose check a result is: the user, its partner, and the generation of its data.
#[derive(Debug, Clone, Copy)]
pub struct CheckTarget {
    pub user: i64,
    pub partner: i64,
    pub generation: i64,
}

/// Binds the 19 registration columns, in the order both the `INSERT` and the `UPDATE` list them
/// (`email` … `user_longitude` as `$1` … `$19`).
macro_rules! bind_prospect {
    ($query:expr, $p:expr, $place_detail:expr) => {{
        let p: &Prospect = $p;
        $query
            .bind(p.email.as_ref().map(Email::as_str))
            .bind(p.email_key())
            .bind(p.phone.e164())
            .bind(&p.first_name)
            .bind(p.middle_name.as_deref())
            .bind(&p.last_name)
            .bind(p.second_last_name.as_deref())
            .bind(p.gender.map(Gender::as_str))
            .bind(p.date_of_birth.map(|d| d.to_string()))
            .bind(p.language.map(Language::as_str))
            .bind(p.street.as_deref())
            .bind(p.city.as_deref())
            .bind(p.state)
            .bind(p.country.map(Country::as_str))
            .bind($place_detail)
            .bind(p.address_location.map(|l| l.lat))
            .bind(p.address_location.map(|l| l.lng))
            .bind(p.user_location.map(|l| l.lat))
            .bind(p.user_location.map(|l| l.lng))
    }};
}

/// A new prospect to store.
pub struct NewProspect<'a> {
    pub partner: PartnerId,
    pub public_id: PublicUserId,
    pub prospect: &'a Prospect,
    pub created_at: i64,
}

impl Store {
    /// Inserts the prospect in `UpgradeInProgress/None`, its first event and one job per check,
    /// in one transaction. A duplicate phone or e-mail of the partner is `StoreError::Conflict`
    /// (see `Duplicate::of`).
    pub async fn create_prospect(&self, new: &NewProspect<'_>, actor: &str) -> StoreResult<UserId> {
        let p = new.prospect;
        let accepted = CipState::ACCEPTED;
        let place_detail = p.place_detail.as_ref().map(|(_, json)| json.to_string());
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let query = sqlx::query_scalar(
                "INSERT INTO users (email, email_key, phone, first_name, middle_name, last_name, second_last_name, gender,
                    date_of_birth, language, street, city, state, country, place_detail, address_latitude,
                    address_longitude, user_latitude, user_longitude, public_id, partner_id, cip_status, cip_detail,
                    cip_generation, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
                    $21, $22, $23, 0, $24)
                 RETURNING id",
            );
            let id: i64 = bind_prospect!(query, p, place_detail)
                .bind(new.public_id.as_str())
                .bind(new.partner.get())
                .bind(accepted.status.as_str())
                .bind(accepted.detail.as_str())
                .bind(new.created_at)
                .fetch_one(&mut *tx)
                .await?;
            let transition = Transition::new(None, accepted, "accepted", actor).expect("a first state is always legal");
            sqlx::query(
                "INSERT INTO user_events (user_id, partner_id, at, to_status, to_detail, reason, actor)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(new.partner.get())
            .bind(new.created_at)
            .bind(transition.to.status.as_str())
            .bind(transition.to.detail.as_str())
            .bind(&transition.reason)
            .bind(&transition.actor)
            .execute(&mut *tx)
            .await?;
            for job in check_jobs(new.partner, id, 0, &Check::ALL, new.created_at) {
                enqueue_in!(tx, &job, new.created_at);
            }
            tx.commit().await?;
            UserId::new(id).map_err(|_| StoreError::Corrupt(format!("user id {id} out of range")))
        })
    }

    /// A prospect of `partner`, found by public id, phone or e-mail.
    pub async fn find_prospect(&self, partner: PartnerId, by: Lookup<'_>) -> StoreResult<Option<ProspectRecord>> {
        macro_rules! by_column {
            ($column:literal, $value:expr) => {
                with_pool!(self, read, |pool| {
                    sqlx::query_as(concat!(
                        "SELECT ",
                        prospect_columns!(),
                        " FROM users WHERE partner_id = $1 AND ",
                        $column,
                        " = $2"
                    ))
                    .bind(partner.get())
                    .bind($value)
                    .fetch_optional(pool)
                    .await?
                })
            };
        }
        Ok(match by {
            Lookup::PublicId(v) => by_column!("public_id", v),
            Lookup::Phone(v) => by_column!("phone", v),
            Lookup::EmailKey(v) => by_column!("email_key", v),
        })
    }

    /// Any partner's user by public id: staff routes only.
    pub async fn prospect_by_public_id(&self, public_id: &str) -> StoreResult<Option<ProspectRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(concat!("SELECT ", prospect_columns!(), " FROM users WHERE public_id = $1"))
                .bind(public_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Sets which consents the partner's users must give ('', 'privacy', 'contract',
    /// 'privacy,contract'). False when the partner does not exist.
    pub async fn set_required_consents(&self, partner: PartnerId, consents: &str) -> StoreResult<bool> {
        with_pool!(self, write, |pool| {
            Ok(sqlx::query("UPDATE partners SET required_consents = $1 WHERE id = $2")
                .bind(consents)
                .bind(partner.get())
                .execute(pool)
                .await?
                .rows_affected()
                == 1)
        })
    }

    pub async fn required_consents(&self, partner: PartnerId) -> StoreResult<String> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT required_consents FROM partners WHERE id = $1")
                .bind(partner.get())
                .fetch_optional(pool)
                .await?
                .unwrap_or_default()
        }))
    }

    /// The prospect a job is about (the job carries its partner: tenants stay apart here too).
    pub async fn prospect_for_job(&self, user: i64, partner: i64) -> StoreResult<Option<ProspectRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(concat!("SELECT ", prospect_columns!(), " FROM users WHERE id = $1 AND partner_id = $2"))
                .bind(user)
                .bind(partner)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Records one validator's result (and its screening, for the sanctions check) and completes
    /// its job, atomically; when it was the last check of the generation, decides the user's next
    /// state in the same transaction. `None` when the job's lease was lost (nothing written).
    /// A result for an older generation (the user corrected the data meanwhile) is dropped.
    pub async fn finish_check(
        &self,
        job: &ClaimedJob,
        target: CheckTarget,
        result: &CheckResult,
        screening: Option<&NewScreening>,
        now: i64,
    ) -> Result<Option<Option<CipState>>, MoveError> {
        let CheckTarget { user, partner, generation } = target;
        with_pool!(self, write, |pool| {
            in_transaction!(pool, |tx| {
                if !complete_in!(tx, job, now) {
                    return Ok(None);
                }
                let Some(record) = lock_prospect_in!(tx, user, partner) else { return Ok(Some(None)) };
                if record.cip_generation != generation {
                    return Ok(Some(None));
                }
                if let Some(screening) = screening {
                    insert_screening_in!(tx, screening);
                }
                let (outcome, detail) = result.outcome.to_columns();
                sqlx::query(
                    "INSERT INTO cip_checks (user_id, generation, check_name, outcome, detail, reason, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, generation, check_name) DO NOTHING",
                )
                .bind(user)
                .bind(generation)
                .bind(result.check.as_str())
                .bind(outcome)
                .bind(detail)
                .bind(&result.reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // Only a registration still being validated is decided here; one that moved on
                // (a compliance case cleared early, say) keeps its state.
                if record.cip_state()? != Some(CipState::ACCEPTED) {
                    return Ok(Some(None));
                }
                Ok::<_, MoveError>(Some(decide_in!(tx, &record, "validated", "cip:validators", now)))
            })
        })
    }

    /// `AccountUpgradeInProgress` → `Completed` (the `cip.provision` job), with the job's
    /// completion. `None` when the lease was lost; `Some(false)` when the user had moved on.
    pub async fn finish_provisioning(
        &self,
        job: &ClaimedJob,
        user: i64,
        partner: i64,
        now: i64,
    ) -> Result<Option<bool>, MoveError> {
        with_pool!(self, write, |pool| {
            in_transaction!(pool, |tx| {
                if !complete_in!(tx, job, now) {
                    return Ok(None);
                }
                let Some(record) = lock_prospect_in!(tx, user, partner) else { return Ok(Some(false)) };
                if record.cip_state()? != Some(CipState::PROVISIONING) {
                    return Ok(Some(false));
                }
                move_in!(tx, &record, CipState::COMPLETED, "account opened", "cip:provisioning", now);
                Ok::<_, MoveError>(Some(true))
            })
        })
    }

    /// Replaces a soft-failed registration with its corrected version: bumps the generation,
    /// keeps the passed results of checks the correction does not touch, and enqueues the rest.
    pub async fn correct_prospect(
        &self,
        user: &str,
        partner: PartnerId,
        corrected: &Prospect,
        changed_fields: &[&str],
        actor: &str,
        now: i64,
    ) -> Result<CipState, MoveError> {
        let p = corrected;
        let place_detail = p.place_detail.as_ref().map(|(_, json)| json.to_string());
        with_pool!(self, write, |pool| {
            in_transaction!(pool, |tx| {
                let id: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM users WHERE public_id = $1 AND partner_id = $2")
                        .bind(user)
                        .bind(partner.get())
                        .fetch_optional(&mut *tx)
                        .await?;
                let id = id.ok_or(MoveError::NotFound)?;
                let record = lock_prospect_in!(tx, id, partner.get()).ok_or(MoveError::NotFound)?;
                let from = record.cip_state()?;
                if from.map(|s| s.status) != Some(Status::UpgradeSoftFailed) {
                    return Err(MoveError::WrongState(from.map_or("not in onboarding".into(), |s| s.to_string())));
                }
                let old = checks_in!(tx, &record);
                let generation = record.cip_generation + 1;
                let stale: Vec<Check> = changed_fields.iter().flat_map(|f| Check::affected_by(f)).copied().collect();
                let rerun: Vec<Check> = Check::ALL
                    .into_iter()
                    .filter(|c| stale.contains(c) || !old.iter().any(|r| r.check == *c && r.outcome == Outcome::Pass))
                    .collect();
                let update = sqlx::query(
                    "UPDATE users SET email = $1, email_key = $2, phone = $3, first_name = $4, middle_name = $5,
                        last_name = $6, second_last_name = $7, gender = $8, date_of_birth = $9, language = $10,
                        street = $11, city = $12, state = $13, country = $14, place_detail = $15,
                        address_latitude = $16, address_longitude = $17, user_latitude = $18, user_longitude = $19,
                        cip_generation = $20
                     WHERE id = $21",
                );
                bind_prospect!(update, p, place_detail).bind(generation).bind(id).execute(&mut *tx).await.map_err(
                    |e| {
                        let e = StoreError::from(e);
                        Duplicate::of(&e).map_or(MoveError::Store(e), MoveError::Duplicate)
                    },
                )?;
                for kept in old.iter().filter(|r| !rerun.contains(&r.check)) {
                    let (outcome, detail) = kept.outcome.to_columns();
                    sqlx::query(
                        "INSERT INTO cip_checks (user_id, generation, check_name, outcome, detail, reason, at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(id)
                    .bind(generation)
                    .bind(kept.check.as_str())
                    .bind(outcome)
                    .bind(detail)
                    .bind(&kept.reason)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                let reason = format!("corrected: {}", changed_fields.join(", "));
                let to = move_in!(tx, &record, CipState::ACCEPTED, reason, actor, now);
                for job in check_jobs(partner, id, generation, &rerun, now) {
                    enqueue_in!(tx, &job, now);
                }
                Ok::<_, MoveError>(to)
            })
        })
    }

    /// Records consents (the first time each is given counts) and, for a user waiting on them,
    /// moves on. Returns the user's state after.
    pub async fn give_consents(
        &self,
        user: &str,
        partner: PartnerId,
        privacy: bool,
        contract: bool,
        actor: &str,
        now: i64,
    ) -> Result<Option<CipState>, MoveError> {
        with_pool!(self, write, |pool| {
            in_transaction!(pool, |tx| {
                let record: Option<ProspectRecord> = sqlx::query_as(concat!(
                    "UPDATE users SET privacy_consent_at = CASE WHEN $1 THEN COALESCE(privacy_consent_at, $3) ELSE privacy_consent_at END,
                                      contract_consent_at = CASE WHEN $2 THEN COALESCE(contract_consent_at, $3) ELSE contract_consent_at END
                     WHERE public_id = $4 AND partner_id = $5 RETURNING ",
                    prospect_columns!()
                ))
                .bind(privacy)
                .bind(contract)
                .bind(now)
                .bind(user)
                .bind(partner.get())
                .fetch_optional(&mut *tx)
                .await?;
                let record = record.ok_or(MoveError::NotFound)?;
                let state = record.cip_state()?;
                let waiting = state.is_some_and(|s| s.status == Status::UpgradePending && s != CipState::COMPLIANCE);
                if !waiting {
                    return Ok::<_, MoveError>(state);
                }
                Ok(decide_in!(tx, &record, "consents given", actor, now).or(state))
            })
        })
    }

    /// Open compliance cases, oldest first, after the user id `after`.
    pub async fn compliance_cases(&self, after: i64, limit: i64) -> StoreResult<Vec<ComplianceCase>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT u.id, u.public_id, u.partner_id, u.first_name, u.middle_name, u.last_name, u.second_last_name,
                        u.date_of_birth, u.country, s.list_id, s.top_score, s.matches, u.created_at
                 FROM users u
                 LEFT JOIN screenings s ON s.id = (SELECT MAX(id) FROM screenings WHERE user_id = u.id)
                 WHERE u.cip_status = 'UpgradePending' AND u.cip_detail = 'Compliance' AND u.id > $1
                 ORDER BY u.id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// A compliance officer's decision on a case: `clear` puts the user back on track (on to the
    /// state the other checks decide, or back to validation while some still run); otherwise
    /// the user is blocked (`UpgradeFailed/ComplianceBlocked`). Audited in the same transaction.
    pub async fn decide_compliance(
        &self,
        user: &str,
        clear: bool,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<CipState, MoveError> {
        with_pool!(self, write, |pool| {
            in_transaction!(pool, |tx| {
                let ids: Option<(i64, i64)> = sqlx::query_as("SELECT id, partner_id FROM users WHERE public_id = $1")
                    .bind(user)
                    .fetch_optional(&mut *tx)
                    .await?;
                let (id, partner) = ids.ok_or(MoveError::NotFound)?;
                let record = lock_prospect_in!(tx, id, partner).ok_or(MoveError::NotFound)?;
                let from = record.cip_state()?;
                if from != Some(CipState::COMPLIANCE) {
                    return Err(MoveError::WrongState(from.map_or("not in onboarding".into(), |s| s.to_string())));
                }
                let (action, to) = if clear {
                    sqlx::query(
                        "INSERT INTO cip_checks (user_id, generation, check_name, outcome, detail, reason, at)
                         VALUES ($1, $2, 'sanctions', 'cleared', NULL, $3, $4)
                         ON CONFLICT (user_id, generation, check_name)
                         DO UPDATE SET outcome = 'cleared', detail = NULL, reason = $3, at = $4",
                    )
                    .bind(id)
                    .bind(record.cip_generation)
                    .bind(format!("cleared by {actor}: {reason}"))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let why = format!("compliance cleared: {reason}");
                    let to = match decide_in!(tx, &record, why.as_str(), actor, now) {
                        Some(to) => to,
                        None => move_in!(tx, &record, CipState::ACCEPTED, why, actor, now),
                    };
                    ("compliance.clear", to)
                } else {
                    let blocked = CipState::new(Status::UpgradeFailed, cip::Detail::ComplianceBlocked);
                    (
                        "compliance.block",
                        move_in!(tx, &record, blocked, format!("compliance blocked: {reason}"), actor, now),
                    )
                };
                let detail = serde_json::json!({ "reason": reason, "to": to.to_string() }).to_string();
                audit_in!(tx, now, actor, action, Some(user), detail);
                Ok::<_, MoveError>(to)
            })
        })
    }

    /// (check results recorded, users they belong to) for a partner: with the job table, how
    /// tests verify that each validator ran exactly once per user.
    pub async fn cip_check_counts(&self, partner: PartnerId) -> StoreResult<(i64, i64)> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT COUNT(*), COUNT(DISTINCT c.user_id) FROM cip_checks c JOIN users u ON u.id = c.user_id
                 WHERE u.partner_id = $1",
            )
            .bind(partner.get())
            .fetch_one(pool)
            .await?
        }))
    }
}
