//! Staff tokens and the audit log.

use super::{Store, StoreError, StoreResult, Tx};
use crate::domain::credentials::{StaffRole, StoredSecret};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaffTokenRecord {
    pub id: String,
    pub name: String,
    pub role: StaffRole,
    #[serde(skip)]
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct StaffTokenRow {
    id: String,
    name: String,
    role: String,
    secret_hash: Vec<u8>,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl TryFrom<StaffTokenRow> for StaffTokenRecord {
    type Error = StoreError;
    fn try_from(row: StaffTokenRow) -> Result<Self, StoreError> {
        Ok(StaffTokenRecord {
            role: row
                .role
                .parse()
                .map_err(|e: crate::domain::UnknownValue| StoreError::Corrupt(format!("staff role: {e}")))?,
            id: row.id,
            name: row.name,
            secret_hash: row.secret_hash,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// Stores a new staff token named `name` in the open transaction (names are unique).
pub async fn insert_token(
    tx: &mut Tx<'_>,
    name: &str,
    role: StaffRole,
    token: &impl StoredSecret,
    now: i64,
) -> StoreResult<StaffTokenRecord> {
    on_tx!(tx, |conn| {
        sqlx::query("INSERT INTO admin_tokens (id, name, role, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(token.id())
            .bind(name)
            .bind(role.as_str())
            .bind(&token.hash()[..])
            .bind(now)
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(StaffTokenRecord {
        id: token.id().to_owned(),
        name: name.to_owned(),
        role,
        secret_hash: token.hash().to_vec(),
        created_at: now,
        revoked_at: None,
    })
}

/// Revokes the live token named `name` in the open transaction; false when there is none.
pub async fn revoke_token(tx: &mut Tx<'_>, name: &str, now: i64) -> StoreResult<bool> {
    let done = on_tx!(tx, |conn| {
        sqlx::query("UPDATE admin_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(name)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(done == 1)
}

impl Store {
    pub async fn find_staff_token(&self, id: &str) -> StoreResult<Option<StaffTokenRecord>> {
        const SQL: &str = "SELECT id, name, role, secret_hash, created_at, revoked_at FROM admin_tokens WHERE id = $1";
        self.find_by_key::<StaffTokenRow, _>(SQL, id).await
    }

    pub async fn list_staff_tokens(&self) -> StoreResult<Vec<StaffTokenRecord>> {
        let rows: Vec<StaffTokenRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, name, role, secret_hash, created_at, revoked_at FROM admin_tokens ORDER BY created_at, id",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(StaffTokenRecord::try_from).collect()
    }
}
