//! Users, whatever surface created them.

use super::{Store, StoreError, StoreResult};
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

impl Store {
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
