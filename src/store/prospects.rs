//! Seed-002 prospects: the registration's row, its reads, and the row lock every CIP move takes
//! first, so two validators finishing at once on two nodes still decide exactly once. The rules
//! of those moves live in `core::onboarding`.

use super::sanctions::stored_cip_state;
use super::{Store, StoreError, StoreResult, Tx};
use crate::domain::address::{Country, LatLng, PlaceDetail, Subdivision};
use crate::domain::cip::{CipState, Consents, RequiredConsents};
use crate::domain::prospect::{DateOfBirth, Gender, Language, PersonName, Prospect};
use crate::domain::{Email, PartnerId, Phone, PublicUserId};

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
    /// Whether `Completed` needs a passed KYC review too.
    pub kyc_required: bool,
    pub created_at: i64,
    /// The partner's own id for the user (seed 001 and the partner user API), when it sent one.
    pub external_user_id: Option<String>,
}

macro_rules! prospect_columns {
    () => {
        "id, public_id, partner_id, first_name, middle_name, last_name, second_last_name, gender, date_of_birth,
         email, phone, language, street, city, state, country, place_detail, address_latitude, address_longitude,
         user_latitude, user_longitude, cip_status, cip_detail, cip_generation, privacy_consent_at,
         contract_consent_at, kyc_required, created_at, external_user_id"
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
        let name = |v: &Option<String>, what: &str| {
            v.as_deref().map(PersonName::parse).transpose().map_err(|_| self.corrupt(what))
        };
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
            first_name: name(&self.first_name, "first name")?.ok_or_else(|| self.corrupt("first name"))?,
            middle_name: name(&self.middle_name, "middle name")?,
            last_name: name(&self.last_name, "last name")?.ok_or_else(|| self.corrupt("last name"))?,
            second_last_name: name(&self.second_last_name, "second last name")?,
            gender: self.gender.as_deref().and_then(Gender::parse),
            date_of_birth: self.date_of_birth.as_deref().and_then(crate::domain::parse_date).map(DateOfBirth::stored),
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
    /// The partner's `externalUserId`.
    ExternalId(&'a str),
}

/// An open compliance case: a user waiting in `UpgradePending/Compliance`, with the screening
/// that put it there.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
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
    /// Why the case was opened: the reason of the transition into it (a possible sanctions
    /// match, a KYC review on hold, with the checks' own reasons).
    pub reason: Option<String>,
    pub created_at: i64,
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
            .bind(p.first_name.as_str())
            .bind(p.middle_name.as_ref().map(PersonName::as_str))
            .bind(p.last_name.as_str())
            .bind(p.second_last_name.as_ref().map(PersonName::as_str))
            .bind(p.gender.map(Gender::as_str))
            .bind(p.date_of_birth.map(|d| d.to_string()))
            .bind(p.language.map(Language::as_str))
            .bind(p.street.as_deref())
            .bind(p.city.as_deref())
            .bind(p.state.map(Subdivision::as_str))
            .bind(p.country.map(Country::as_str))
            .bind($place_detail)
            .bind(p.address_location.map(|l| l.lat))
            .bind(p.address_location.map(|l| l.lng))
            .bind(p.user_location.map(|l| l.lat))
            .bind(p.user_location.map(|l| l.lng))
    }};
}

/// A new prospect to store, in its first CIP state.
#[derive(Debug, Clone)]
pub struct NewProspect {
    pub partner: PartnerId,
    pub public_id: PublicUserId,
    pub prospect: Prospect,
    pub state: CipState,
    pub kyc_required: bool,
    pub created_at: i64,
}

/// Inserts the prospect (generation 0) in the open transaction; returns its id. A duplicate
/// phone or e-mail of the partner is `StoreError::Conflict` (see `Duplicate::of`).
pub async fn insert(tx: &mut Tx<'_>, new: &NewProspect) -> StoreResult<i64> {
    let p = &new.prospect;
    let place_detail = p.place_detail.as_ref().map(|(_, json)| json.to_string());
    Ok(on_tx!(tx, |conn| {
        let query = sqlx::query_scalar(
            "INSERT INTO users (email, email_key, phone, first_name, middle_name, last_name, second_last_name, gender,
                date_of_birth, language, street, city, state, country, place_detail, address_latitude,
                address_longitude, user_latitude, user_longitude, public_id, partner_id, cip_status, cip_detail,
                cip_generation, kyc_required, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
                $21, $22, $23, 0, $24, $25)
             RETURNING id",
        );
        bind_prospect!(query, p, place_detail.as_deref())
            .bind(new.public_id.as_str())
            .bind(new.partner.get())
            .bind(new.state.status.as_str())
            .bind(new.state.detail.as_str())
            .bind(new.kyc_required)
            .bind(new.created_at)
            .fetch_one(conn)
            .await?
    }))
}

/// Replaces the registration's data with `p` as generation `generation`, in the open
/// transaction. A duplicate phone or e-mail is `StoreError::Conflict`.
pub async fn update(tx: &mut Tx<'_>, id: i64, p: &Prospect, generation: i64) -> StoreResult<()> {
    let place_detail = p.place_detail.as_ref().map(|(_, json)| json.to_string());
    on_tx!(tx, |conn| {
        let update = sqlx::query(
            "UPDATE users SET email = $1, email_key = $2, phone = $3, first_name = $4, middle_name = $5,
                last_name = $6, second_last_name = $7, gender = $8, date_of_birth = $9, language = $10,
                street = $11, city = $12, state = $13, country = $14, place_detail = $15,
                address_latitude = $16, address_longitude = $17, user_latitude = $18, user_longitude = $19,
                cip_generation = $20
             WHERE id = $21",
        );
        bind_prospect!(update, p, place_detail.as_deref()).bind(generation).bind(id).execute(conn).await.map(drop)?
    });
    Ok(())
}

/// Makes the user's CIP need a passed KYC review (a seed-003 user submitting a profile).
pub async fn require_kyc(tx: &mut Tx<'_>, id: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query("UPDATE users SET kyc_required = $1 WHERE id = $2")
            .bind(true)
            .bind(id)
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}

/// Which user a CIP move is about.
#[derive(Debug, Clone, Copy)]
pub enum Whose<'a> {
    /// By internal id, within its partner (a job's payload).
    Id { user: i64, partner: i64 },
    /// By public id, within a partner (a partner's request).
    Public { user: &'a str, partner: PartnerId },
    /// By public id, any partner's (staff).
    AnyPartner(&'a str),
}

/// Locks the user's row for the rest of the transaction and reads it. The no-op `UPDATE` is the
/// portable row lock: PostgreSQL holds it to commit; SQLite has one writer anyway.
pub async fn lock(tx: &mut Tx<'_>, whose: Whose<'_>) -> StoreResult<Option<ProspectRecord>> {
    macro_rules! lock_where {
        ($condition:literal) => {
            concat!(
                "UPDATE users SET cip_generation = cip_generation WHERE ",
                $condition,
                " RETURNING ",
                prospect_columns!()
            )
        };
    }
    Ok(match whose {
        Whose::Id { user, partner } => on_tx!(tx, |conn| {
            sqlx::query_as(lock_where!("id = $1 AND partner_id = $2"))
                .bind(user)
                .bind(partner)
                .fetch_optional(conn)
                .await?
        }),
        Whose::Public { user, partner } => on_tx!(tx, |conn| {
            sqlx::query_as(lock_where!("public_id = $1 AND partner_id = $2"))
                .bind(user)
                .bind(partner.get())
                .fetch_optional(conn)
                .await?
        }),
        Whose::AnyPartner(user) => {
            on_tx!(tx, |conn| { sqlx::query_as(lock_where!("public_id = $1")).bind(user).fetch_optional(conn).await? })
        }
    })
}

/// Records consents (the first time each is given counts) and locks and reads the user, in
/// the open transaction. `None` when the partner has no such user.
pub async fn record_consents(
    tx: &mut Tx<'_>,
    user: &str,
    partner: PartnerId,
    privacy: bool,
    contract: bool,
    now: i64,
) -> StoreResult<Option<ProspectRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(concat!(
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
        .fetch_optional(conn)
        .await?
    }))
}

/// The consents `record`'s partner requires and the user gave, read in the open transaction.
pub async fn consents(tx: &mut Tx<'_>, record: &ProspectRecord) -> StoreResult<Consents> {
    let stored: String = on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT required_consents FROM partners WHERE id = $1")
            .bind(record.partner_id)
            .fetch_one(conn)
            .await?
    });
    let required = RequiredConsents::from_column(&stored);
    Ok(Consents {
        privacy_required: required.privacy,
        contract_required: required.contract,
        privacy_given: record.privacy_consent_at.is_some(),
        contract_given: record.contract_consent_at.is_some(),
    })
}

impl Store {
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
            Lookup::ExternalId(v) => by_column!("external_user_id", v),
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

    /// Sets which consents the partner's users must give, how they confirm them, and where
    /// Onboard writes to the partner (`None` keeps each as it is). False when the partner does
    /// not exist.
    pub async fn set_partner_settings(
        &self,
        partner: PartnerId,
        required: Option<RequiredConsents>,
        confirmation: Option<crate::domain::consent::ConsentConfirmation>,
        contact_email: Option<&crate::domain::Email>,
    ) -> StoreResult<bool> {
        with_pool!(self, write, |pool| {
            Ok(sqlx::query(
                "UPDATE partners SET required_consents = COALESCE($1, required_consents),
                                     consent_confirmation = COALESCE($2, consent_confirmation),
                                     contact_email = COALESCE($4, contact_email)
                 WHERE id = $3",
            )
            .bind(required.map(|r| r.column()))
            .bind(confirmation.map(|c| c.as_str()))
            .bind(partner.get())
            .bind(contact_email.map(|e| e.as_str().to_owned()))
            .execute(pool)
            .await?
            .rows_affected()
                == 1)
        })
    }

    pub async fn partner_contact_email(&self, partner: PartnerId) -> StoreResult<Option<String>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_scalar::<_, Option<String>>("SELECT contact_email FROM partners WHERE id = $1")
                .bind(partner.get())
                .fetch_optional(pool)
                .await?
        })
        .flatten())
    }

    pub async fn required_consents(&self, partner: PartnerId) -> StoreResult<RequiredConsents> {
        let stored: Option<String> = with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT required_consents FROM partners WHERE id = $1")
                .bind(partner.get())
                .fetch_optional(pool)
                .await?
        });
        Ok(RequiredConsents::from_column(stored.as_deref().unwrap_or_default()))
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

    /// Open compliance cases, oldest first, after the user id `after`.
    pub async fn compliance_cases(&self, after: i64, limit: i64) -> StoreResult<Vec<ComplianceCase>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT u.id, u.public_id, u.partner_id, u.first_name, u.middle_name, u.last_name, u.second_last_name,
                        u.date_of_birth, u.country, s.list_id, s.top_score, s.matches,
                        (SELECT e.reason FROM user_events e WHERE e.user_id = u.id ORDER BY e.id DESC LIMIT 1) AS reason,
                        u.created_at
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
