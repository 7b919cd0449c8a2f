//! Users, whatever surface created them.

use super::idempotency::{IdempotencyScope, StoredResponse, complete_idempotency_in};
use super::jobs::{NewJob, enqueue_in};
use super::{Store, StoreError, StoreResult};
use crate::domain::cip::CipState;
use crate::domain::{Email, PartnerId, PublicUserId, UserId};

/// A user as seed 001 creates it: an e-mail (or none) and free-form `additionalData`.
#[derive(Debug, Clone)]
pub struct NewMinimalUser {
    pub partner: PartnerId,
    pub public_id: PublicUserId,
    pub email: Option<Email>,
    /// The JSON text of `additionalData` exactly as sent.
    pub additional_data: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub public_id: PublicUserId,
    pub partner: PartnerId,
    pub email: Option<String>,
    pub additional_data: Option<String>,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: i64,
    pub(super) public_id: String,
    partner_id: i64,
    email: Option<String>,
    additional_data: Option<String>,
    created_at: i64,
}

impl TryFrom<UserRow> for UserRecord {
    type Error = StoreError;
    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("user {}: {what}", row.id));
        Ok(UserRecord {
            id: UserId::new(row.id).map_err(|_| corrupt("id"))?,
            public_id: row.public_id.parse().map_err(|_| corrupt("public id"))?,
            partner: PartnerId::new(row.partner_id).map_err(|_| corrupt("partner"))?,
            email: row.email,
            additional_data: row.additional_data,
            created_at: row.created_at,
        })
    }
}

/// What to do with an Idempotency-Key claim when the user is committed: store the response
/// in the same transaction, so a committed user always has its replayable answer.
pub struct CompleteWith<'a, F> {
    pub scope: &'a IdempotencyScope,
    pub respond: F,
}

impl Store {
    /// Inserts the user; with `complete`, also finishes the Idempotency-Key claim atomically.
    pub async fn create_minimal_user<F>(
        &self,
        user: &NewMinimalUser,
        complete: Option<CompleteWith<'_, F>>,
    ) -> StoreResult<UserRecord>
    where
        F: FnOnce(&UserRecord) -> StoredResponse,
    {
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let row: UserRow = sqlx::query_as(concat!(
                "INSERT INTO users (public_id, partner_id, email, additional_data, created_at) VALUES ($1, $2, $3, $4, $5)
                 RETURNING ",
                user_columns!()
            ))
            .bind(user.public_id.as_str())
            .bind(user.partner.get())
            .bind(user.email.as_ref().map(Email::as_str))
            .bind(user.additional_data.as_deref())
            .bind(user.created_at)
            .fetch_one(&mut *tx)
            .await?;
            let record = UserRecord::try_from(row)?;
            if let Some(CompleteWith { scope, respond }) = complete {
                let response = respond(&record);
                complete_idempotency_in!(tx, scope, response);
            }
            tx.commit().await?;
            Ok(record)
        })
    }

    /// The user `id` if it belongs to `partner` (tenants never see each other's users).
    pub async fn find_user(&self, partner: PartnerId, id: UserId) -> StoreResult<Option<UserRecord>> {
        let row: Option<UserRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE partner_id = $1 AND id = $2"))
                .bind(partner.get())
                .bind(id.get())
                .fetch_optional(pool)
                .await?
        });
        row.map(UserRecord::try_from).transpose()
    }

    /// How many users `partner` has (tests, metrics).
    pub async fn count_users(&self, partner: PartnerId) -> StoreResult<i64> {
        let n = with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE partner_id = $1")
                .bind(partner.get())
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }
}

/// A person with the data screening and the CIP validators read (seed 002's registrations).
#[derive(Debug, Clone)]
pub struct NewPerson {
    pub partner: PartnerId,
    pub public_id: PublicUserId,
    pub first_name: String,
    pub middle_name: Option<String>,
    pub last_name: String,
    pub second_last_name: Option<String>,
    /// `YYYY-MM-DD`.
    pub date_of_birth: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    pub email: Option<Email>,
    pub created_at: i64,
}

impl Store {
    /// Inserts a person in the CIP machine's first state, its first event and its jobs, in one
    /// transaction: an accepted person is never without the work that validates it.
    pub async fn create_person(&self, person: &NewPerson, actor: &str, jobs: &[NewJob]) -> StoreResult<UserId> {
        let accepted = CipState::ACCEPTED;
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO users (public_id, partner_id, email, first_name, middle_name, last_name, second_last_name,
                                    date_of_birth, country, cip_status, cip_detail, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            )
            .bind(person.public_id.as_str())
            .bind(person.partner.get())
            .bind(person.email.as_ref().map(Email::as_str))
            .bind(&person.first_name)
            .bind(person.middle_name.as_deref())
            .bind(&person.last_name)
            .bind(person.second_last_name.as_deref())
            .bind(person.date_of_birth.as_deref())
            .bind(person.country.as_deref())
            .bind(accepted.status.as_str())
            .bind(accepted.detail.as_str())
            .bind(person.created_at)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO user_events (user_id, partner_id, at, to_status, to_detail, reason, actor)
                 VALUES ($1, $2, $3, $4, $5, 'accepted', $6)",
            )
            .bind(id)
            .bind(person.partner.get())
            .bind(person.created_at)
            .bind(accepted.status.as_str())
            .bind(accepted.detail.as_str())
            .bind(actor)
            .execute(&mut *tx)
            .await?;
            for job in jobs {
                enqueue_in!(tx, job, person.created_at);
            }
            tx.commit().await?;
            UserId::new(id).map_err(|_| StoreError::Corrupt(format!("user id {id} out of range")))
        })
    }
}
