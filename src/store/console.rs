//! What the compliance and operations console reads and writes beyond the admin API: staff
//! sessions, holds on cases, and the read models of its pages.

use super::{AuditEntry, Store, StoreResult, Tx};

/// A live console session with the staff token it was opened with.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub token_id: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// Stores a new session (`id_hash` is the SHA-256 of the cookie's secret) in the open write.
pub async fn insert_session(tx: &mut Tx<'_>, id_hash: &[u8], token_id: &str, now: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, token_id, created_at, last_seen_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(id_hash)
        .bind(token_id)
        .bind(now)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

/// Ends a session in the open write; false when it had ended already.
pub async fn end_session(tx: &mut Tx<'_>, id_hash: &[u8], now: i64) -> StoreResult<bool> {
    let ended = on_tx!(tx, |conn| {
        sqlx::query("UPDATE console_sessions SET ended_at = $2 WHERE id_hash = $1 AND ended_at IS NULL")
            .bind(id_hash)
            .bind(now)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(ended == 1)
}

/// Who holds a case and until when.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CaseHold {
    pub holder: String,
    pub expires_at: i64,
}

/// Takes or renews `holder`'s hold on the case of `user` until `until`, unless someone else holds
/// it and their hold has not expired. Returns the hold as it stands after.
pub async fn hold_case(tx: &mut Tx<'_>, user: &str, holder: &str, until: i64, now: i64) -> StoreResult<CaseHold> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO case_holds (user_public_id, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_public_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE case_holds.holder = excluded.holder OR case_holds.expires_at <= $4",
        )
        .bind(user)
        .bind(holder)
        .bind(until)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        sqlx::query_as("SELECT holder, expires_at FROM case_holds WHERE user_public_id = $1")
            .bind(user)
            .fetch_one(&mut *conn)
            .await?
    }))
}

/// The unexpired hold on the case of `user`, read in the open write.
pub async fn case_hold(tx: &mut Tx<'_>, user: &str, now: i64) -> StoreResult<Option<CaseHold>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as("SELECT holder, expires_at FROM case_holds WHERE user_public_id = $1 AND expires_at > $2")
            .bind(user)
            .bind(now)
            .fetch_optional(conn)
            .await?
    }))
}

/// Drops `holder`'s hold on the case of `user`, in the open write; false when they had none.
pub async fn release_hold(tx: &mut Tx<'_>, user: &str, holder: &str) -> StoreResult<bool> {
    let released = on_tx!(tx, |conn| {
        sqlx::query("DELETE FROM case_holds WHERE user_public_id = $1 AND holder = $2")
            .bind(user)
            .bind(holder)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(released == 1)
}

/// Drops any hold on the case of `user` (it was decided), in the open write.
pub async fn release_case(tx: &mut Tx<'_>, user: &str) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query("DELETE FROM case_holds WHERE user_public_id = $1").bind(user).execute(conn).await.map(drop)?
    });
    Ok(())
}

/// The newest audit entry of one of `actions` on the user (`public_id`, row `id`) made since the
/// user last entered the compliance case, read in the open write: who decided the case, when
/// it is not open any more. None when it closed some other way.
pub async fn decision_since_opened(
    tx: &mut Tx<'_>,
    public_id: &str,
    id: i64,
    actions: [&str; 2],
) -> StoreResult<Option<AuditEntry>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(
            "SELECT id, at, actor, action, target, detail FROM audit_log
             WHERE target = $1 AND action IN ($2, $3)
               AND at >= (SELECT COALESCE(MAX(at), 0) FROM user_events
                          WHERE user_id = $4 AND to_status = 'UpgradePending' AND to_detail = 'Compliance')
             ORDER BY id DESC LIMIT 1",
        )
        .bind(public_id)
        .bind(actions[0])
        .bind(actions[1])
        .bind(id)
        .fetch_optional(conn)
        .await?
    }))
}

/// Which open cases the review queue shows (a case may be both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseReason {
    /// A possible sanctions match under review (a case with no KYC review on hold is one).
    Sanctions,
    /// A KYC review on hold.
    Kyc,
}

/// One row of the review queue.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueRow {
    pub id: i64,
    pub public_id: String,
    pub partner_id: i64,
    pub partner_name: String,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub second_last_name: Option<String>,
    pub top_score: Option<f64>,
    /// The reason of the newest event: why the case was opened.
    pub reason: Option<String>,
    /// When the user entered the case (the newest event).
    pub opened_at: Option<i64>,
    pub holder: Option<String>,
}

/// A page of a filtered review-queue listing.
#[derive(Debug, Clone, Copy)]
pub struct QueueFilter {
    pub partner: Option<i64>,
    pub reason: Option<CaseReason>,
    /// The last row's `id` of the previous page.
    pub after: i64,
    pub limit: i64,
}

/// A compliance check as recorded for a user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CheckRow {
    pub generation: i64,
    pub check_name: String,
    pub outcome: String,
    pub reason: String,
    pub at: i64,
}

/// A screening of one user with when and by whom.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScreeningRow {
    pub list_id: i64,
    pub actor: String,
    pub decision: String,
    pub top_score: Option<f64>,
    /// The candidates, JSON text.
    pub matches: String,
    pub created_at: i64,
}

/// A partner with its user count (no secrets).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PartnerOverview {
    pub id: i64,
    pub name: String,
    pub environment: String,
    pub created_at: i64,
    pub users: i64,
}

/// A webhook delivery attempt that did not deliver.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FailedAttempt {
    pub at: i64,
    pub partner_id: i64,
    pub url: String,
    pub event_type: String,
    pub event_public_id: String,
    pub attempt: i64,
    pub result: String,
    pub status: Option<i64>,
    pub error: Option<String>,
}

impl Store {
    /// The live session whose secret hashes to `id_hash`, with its token's name and role: none
    /// once signed out, or once the token is revoked.
    pub async fn console_session(&self, id_hash: &[u8]) -> StoreResult<Option<SessionRow>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT s.token_id, t.name, t.role, s.created_at, s.last_seen_at
                 FROM console_sessions s JOIN admin_tokens t ON t.id = s.token_id
                 WHERE s.id_hash = $1 AND s.ended_at IS NULL AND t.revoked_at IS NULL",
            )
            .bind(id_hash)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Records that the session was used at `now` (its idle timeout counts from there).
    pub async fn touch_console_session(&self, id_hash: &[u8], now: i64) -> StoreResult<()> {
        with_pool!(self, write, |pool| {
            sqlx::query("UPDATE console_sessions SET last_seen_at = $2 WHERE id_hash = $1 AND last_seen_at < $2")
                .bind(id_hash)
                .bind(now)
                .execute(pool)
                .await
                .map(drop)?
        });
        Ok(())
    }

    /// Open compliance cases, oldest first, with who holds each (unexpired holds only).
    pub async fn review_queue(&self, filter: QueueFilter, now: i64) -> StoreResult<Vec<QueueRow>> {
        let reason = filter.reason.map(|r| match r {
            CaseReason::Sanctions => "sanctions",
            CaseReason::Kyc => "kyc",
        });
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT u.id, u.public_id, u.partner_id, p.name AS partner_name, u.first_name, u.middle_name, u.last_name,
                        u.second_last_name, s.top_score, e.reason, e.at AS opened_at, h.holder
                 FROM users u
                 JOIN partners p ON p.id = u.partner_id
                 LEFT JOIN screenings s ON s.id = (SELECT MAX(id) FROM screenings WHERE user_id = u.id)
                 LEFT JOIN user_events e ON e.id = (SELECT MAX(id) FROM user_events WHERE user_id = u.id)
                 LEFT JOIN case_holds h ON h.user_public_id = u.public_id AND h.expires_at > $4
                 WHERE u.cip_status = 'UpgradePending' AND u.cip_detail = 'Compliance' AND u.id > $1
                   AND ($2 IS NULL OR u.partner_id = $2)
                   AND ($5 IS NULL OR EXISTS (
                        SELECT 1 FROM cip_checks c WHERE c.user_id = u.id AND c.generation = u.cip_generation
                                                     AND c.check_name = $5 AND c.outcome = 'review')
                        -- A case opened before checks were recorded per generation is a sanctions case.
                        OR ($5 = 'sanctions' AND NOT EXISTS (
                        SELECT 1 FROM cip_checks c WHERE c.user_id = u.id AND c.generation = u.cip_generation
                                                     AND c.check_name = 'kyc' AND c.outcome = 'review')))
                 ORDER BY u.id LIMIT $3",
            )
            .bind(filter.after)
            .bind(filter.partner)
            .bind(filter.limit)
            .bind(now)
            .bind(reason)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Every check result of a user, newest generation first.
    pub async fn user_checks(&self, user: i64) -> StoreResult<Vec<CheckRow>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT generation, check_name, outcome, reason, at FROM cip_checks WHERE user_id = $1
                 ORDER BY generation DESC, at DESC",
            )
            .bind(user)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The screenings of one user, newest first, with when and by whom.
    pub async fn user_screening_history(&self, user: i64) -> StoreResult<Vec<ScreeningRow>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT list_id, actor, decision, top_score, matches, created_at FROM screenings
                 WHERE user_id = $1 ORDER BY id DESC LIMIT 50",
            )
            .bind(user)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Staff actions on `target`, newest first.
    pub async fn audit_for(&self, target: &str, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, at, actor, action, target, detail FROM audit_log WHERE target = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(target)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Audit entries older than the one with id `before` (all, when `None`), newest first.
    pub async fn audit_page(&self, before: Option<i64>, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, at, actor, action, target, detail FROM audit_log WHERE ($1 IS NULL OR id < $1)
                 ORDER BY id DESC LIMIT $2",
            )
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Every partner with how many users it has.
    pub async fn partner_overview(&self) -> StoreResult<Vec<PartnerOverview>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT p.id, p.name, p.environment, p.created_at,
                        (SELECT COUNT(*) FROM users u WHERE u.partner_id = p.id) AS users
                 FROM partners p ORDER BY p.id",
            )
            .fetch_all(pool)
            .await?
        }))
    }

    /// The newest webhook delivery attempts that did not deliver, across partners.
    pub async fn webhook_failures(&self, limit: i64) -> StoreResult<Vec<FailedAttempt>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT a.at, ep.partner_id, ep.url, ev.type AS event_type, ev.public_id AS event_public_id, a.attempt,
                        a.result, a.status, a.error
                 FROM webhook_attempts a
                 JOIN webhook_endpoints ep ON ep.id = a.endpoint_id
                 JOIN webhook_events ev ON ev.id = a.event_id
                 WHERE a.result <> 'delivered' ORDER BY a.id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }
}
