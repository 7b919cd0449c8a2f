//! Staff tokens and the audit log.

use super::{Store, StoreError, StoreResult};
use crate::auth::staff::{NewStaffToken, StaffRole};

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
            role: row.role.parse().map_err(StoreError::Corrupt)?,
            id: row.id,
            name: row.name,
            secret_hash: row.secret_hash,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    /// JSON text.
    pub detail: String,
}

/// Appends to the audit log inside the caller's open transaction.
macro_rules! audit_in {
    ($conn:expr, $at:expr, $actor:expr, $action:expr, $target:expr, $detail:expr) => {{
        sqlx::query("INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)")
            .bind($at)
            .bind($actor)
            .bind($action)
            .bind($target)
            .bind($detail)
            .execute(&mut *$conn)
            .await?;
    }};
}
pub(crate) use audit_in;

impl Store {
    /// Creates a staff token; the creation itself is audited (actor: who ran the command).
    pub async fn create_staff_token(
        &self,
        name: &str,
        role: StaffRole,
        token: &NewStaffToken,
        actor: &str,
        now: i64,
    ) -> StoreResult<StaffTokenRecord> {
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO admin_tokens (id, name, role, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&token.id)
            .bind(name)
            .bind(role.as_str())
            .bind(&token.hash[..])
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let detail = serde_json::json!({ "role": role }).to_string();
            audit_in!(tx, now, actor, "staff_token.create", Some(name), detail);
            tx.commit().await?;
            Ok(StaffTokenRecord {
                id: token.id.clone(),
                name: name.to_owned(),
                role,
                secret_hash: token.hash.to_vec(),
                created_at: now,
                revoked_at: None,
            })
        })
    }

    pub async fn find_staff_token(&self, id: &str) -> StoreResult<Option<StaffTokenRecord>> {
        let row: Option<StaffTokenRow> = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT id, name, role, secret_hash, created_at, revoked_at FROM admin_tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(StaffTokenRecord::try_from).transpose()
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

    /// Revokes the token named `name`; false when there is no such live token.
    pub async fn revoke_staff_token(&self, name: &str, actor: &str, now: i64) -> StoreResult<bool> {
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("UPDATE admin_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done == 1 {
                audit_in!(tx, now, actor, "staff_token.revoke", Some(name), "{}");
            }
            tx.commit().await?;
            Ok(done == 1)
        })
    }

    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        detail: &serde_json::Value,
        now: i64,
    ) -> StoreResult<()> {
        with_pool!(self, write, |pool| {
            let mut conn = pool.acquire().await?;
            audit_in!(conn, now, actor, action, target, detail.to_string());
            Ok(())
        })
    }

    pub async fn audit_log(&self, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1")
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }
}
