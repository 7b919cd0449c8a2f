//! The validators' results, one row per check of each generation of a user's data.

use super::{StoreError, StoreResult, Tx};
use crate::domain::cip::{Check, CheckResult, Outcome};

/// The results recorded for one generation of a user's data.
pub async fn results(tx: &mut Tx<'_>, user: i64, generation: i64) -> StoreResult<Vec<CheckResult>> {
    let rows: Vec<(String, String, Option<String>, String)> = on_tx!(tx, |conn| {
        sqlx::query_as(
            "SELECT check_name, outcome, detail, reason FROM cip_checks WHERE user_id = $1 AND generation = $2",
        )
        .bind(user)
        .bind(generation)
        .fetch_all(conn)
        .await?
    });
    let corrupt = |what: &str| StoreError::Corrupt(format!("user {user}: {what}"));
    rows.into_iter()
        .map(|(check, outcome, detail, reason)| {
            Ok(CheckResult {
                check: Check::parse(&check).ok_or_else(|| corrupt("check name"))?,
                outcome: Outcome::from_columns(&outcome, detail.as_deref()).ok_or_else(|| corrupt("outcome"))?,
                reason,
            })
        })
        .collect()
}

/// How a result meets one already recorded for the same check and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// The first result stands (a validator's job that ran twice).
    Keep,
    /// The new result replaces it (a compliance officer's decision).
    Replace,
}

/// Records `result` for `generation` of `user` in the open transaction.
pub async fn record(
    tx: &mut Tx<'_>,
    user: i64,
    generation: i64,
    result: &CheckResult,
    on_conflict: OnConflict,
    now: i64,
) -> StoreResult<()> {
    let (outcome, detail) = result.outcome.to_columns();
    on_tx!(tx, |conn| {
        // `DO UPDATE … WHERE $8`: one statement for both policies (a false condition keeps the row).
        sqlx::query(
            "INSERT INTO cip_checks (user_id, generation, check_name, outcome, detail, reason, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (user_id, generation, check_name)
             DO UPDATE SET outcome = excluded.outcome, detail = excluded.detail, reason = excluded.reason, at = excluded.at
             WHERE $8",
        )
        .bind(user)
        .bind(generation)
        .bind(result.check.as_str())
        .bind(outcome)
        .bind(detail)
        .bind(&result.reason)
        .bind(now)
        .bind(on_conflict == OnConflict::Replace)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

/// Removes one check's result for `generation` (a KYC review the provider reset: the user is
/// waiting for a new one).
pub async fn remove(tx: &mut Tx<'_>, user: i64, generation: i64, check: Check) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query("DELETE FROM cip_checks WHERE user_id = $1 AND generation = $2 AND check_name = $3")
            .bind(user)
            .bind(generation)
            .bind(check.as_str())
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}
