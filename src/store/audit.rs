//! The audit log: append-only, written in the transaction of the action it records.

use super::{Store, StoreResult, Tx};

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

/// One entry to append: who did what to which target, and the details as JSON.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub actor: String,
    pub action: &'static str,
    pub target: Option<String>,
    pub detail: serde_json::Value,
    pub at: i64,
}

impl AuditRecord {
    pub fn new(actor: &str, action: &'static str, target: Option<&str>, detail: &serde_json::Value, at: i64) -> Self {
        Self { actor: actor.to_owned(), action, target: target.map(str::to_owned), detail: detail.clone(), at }
    }
}

/// Appends `entry` in the open transaction, so the action and its record commit together.
pub async fn append(tx: &mut Tx<'_>, entry: &AuditRecord) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query("INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)")
            .bind(entry.at)
            .bind(&entry.actor)
            .bind(entry.action)
            .bind(entry.target.as_deref())
            .bind(entry.detail.to_string())
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}

impl Store {
    /// The most recent entries, newest first.
    pub async fn audit_log(&self, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1")
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }
}
