//! The CIP machine's event log: every state a user enters, appended in the transaction that
//! moves it (append-only; DESIGN.md §3).

use super::{Store, StoreResult, Tx};
use crate::domain::cip::Transition;

/// Moves a user to `t.to` and appends the event, in the open transaction. The `UPDATE` re-checks
/// the state it expects, so a concurrent move is not overwritten: false (and nothing written)
/// when the user was no longer in `t.from`.
pub async fn transition(tx: &mut Tx<'_>, user: i64, partner: i64, t: &Transition, now: i64) -> StoreResult<bool> {
    let moved = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE users SET cip_status = $1, cip_detail = $2
             WHERE id = $3 AND partner_id = $4 AND cip_status IS NOT DISTINCT FROM $5 AND cip_detail IS NOT DISTINCT FROM $6",
        )
        .bind(t.to.status.as_str())
        .bind(t.to.detail.as_str())
        .bind(user)
        .bind(partner)
        .bind(t.from.map(|s| s.status.as_str()))
        .bind(t.from.map(|s| s.detail.as_str()))
        .execute(conn)
        .await?
        .rows_affected()
    });
    if moved == 1 {
        append(tx, user, partner, t, now).await?;
    }
    Ok(moved == 1)
}

/// Appends the event of `t` alone: for a user inserted in its first state by the same
/// transaction.
pub async fn append(tx: &mut Tx<'_>, user: i64, partner: i64, t: &Transition, now: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO user_events (user_id, partner_id, at, from_status, from_detail, to_status, to_detail, reason, actor)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(user)
        .bind(partner)
        .bind(now)
        .bind(t.from.map(|s| s.status.as_str()))
        .bind(t.from.map(|s| s.detail.as_str()))
        .bind(t.to.status.as_str())
        .bind(t.to.detail.as_str())
        .bind(&t.reason)
        .bind(&t.actor)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

/// Whether the user was ever `Completed` (its account opened), read in the open transaction.
pub async fn ever_completed(tx: &mut Tx<'_>, user: i64) -> StoreResult<bool> {
    let count: i64 = on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT COUNT(*) FROM user_events WHERE user_id = $1 AND to_status = 'Completed'")
            .bind(user)
            .fetch_one(conn)
            .await?
    });
    Ok(count > 0)
}

impl Store {
    /// The CIP events of a user, oldest first: (at, from, to, reason, actor).
    pub async fn user_events(&self, user: i64) -> StoreResult<Vec<UserEvent>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT at, from_status, from_detail, to_status, to_detail, reason, actor FROM user_events
                 WHERE user_id = $1 ORDER BY id",
            )
            .bind(user)
            .fetch_all(pool)
            .await?
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEvent {
    pub at: i64,
    pub from_status: Option<String>,
    pub from_detail: Option<String>,
    pub to_status: String,
    pub to_detail: String,
    pub reason: String,
    pub actor: String,
}
