//! Idempotency-Key records. The primary key (partner, key) is what makes a key single-use
//! across every node; the claim is an INSERT, never a check-then-insert.

use super::{Store, StoreResult, Tx, pin_unit};
use crate::domain::PartnerId;

/// Which key, for which partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyScope {
    pub partner: PartnerId,
    pub key: String,
}

/// A response kept for replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// Headers worth replaying (content type, location), as `(name, value)` pairs.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This request owns the key and must run.
    Acquired,
    /// The key already has a final response: send it again.
    Replay(StoredResponse),
    /// The key was used with a different request.
    Mismatch,
    /// The first request with this key has not finished yet.
    InFlight,
}

#[derive(sqlx::FromRow)]
pub(super) struct KeyRow {
    pub(super) fingerprint: Vec<u8>,
    pub(super) state: String,
    pub(super) locked_until: i64,
    pub(super) response_status: Option<i64>,
    pub(super) response_headers: Option<String>,
    pub(super) response_body: Option<Vec<u8>>,
    pub(super) expires_at: i64,
}

pub(super) fn encode_headers(headers: &[(String, String)]) -> String {
    serde_json::to_string(headers).unwrap_or_else(|_| "[]".into())
}

/// Marks a claimed key completed with `response`, in the open transaction.
pub async fn complete(tx: &mut Tx<'_>, scope: &IdempotencyScope, response: &StoredResponse) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE idempotency_keys SET state = 'completed', response_status = $3, response_headers = $4, response_body = $5
             WHERE partner_id = $1 AND idempotency_key = $2",
        )
        .bind(scope.partner.get())
        .bind(&scope.key)
        .bind(i64::from(response.status))
        .bind(encode_headers(&response.headers))
        .bind(&response.body)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

/// One claim: the key, the request's fingerprint, and the clock and limits to judge it by.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub scope: IdempotencyScope,
    pub fingerprint: [u8; 32],
    pub now: i64,
    /// How long an unfinished claim blocks others before it is presumed crashed.
    pub lease_ms: i64,
    /// How long a completed answer is replayed.
    pub ttl_ms: i64,
    /// The node that holds the claim while in flight (released at once if that node dies).
    pub node: Option<std::sync::Arc<str>>,
}

/// What an existing record means for a new request with the same key.
pub(super) enum Verdict {
    Final(Claim),
    /// An unfinished claim whose lease ran out (its node died): take it over if still so.
    TakeOver {
        locked_until: i64,
    },
}

pub(super) fn judge(row: KeyRow, request: &ClaimRequest) -> Verdict {
    if row.fingerprint.as_slice() != request.fingerprint.as_slice() {
        return Verdict::Final(Claim::Mismatch);
    }
    if row.state == "completed" {
        let headers = row.response_headers.as_deref().and_then(|h| serde_json::from_str(h).ok()).unwrap_or_default();
        return Verdict::Final(Claim::Replay(StoredResponse {
            status: row.response_status.and_then(|s| u16::try_from(s).ok()).unwrap_or(500),
            headers,
            body: row.response_body.unwrap_or_default(),
        }));
    }
    if row.locked_until > request.now {
        return Verdict::Final(Claim::InFlight);
    }
    Verdict::TakeOver { locked_until: row.locked_until }
}

/// Claims a key in the open transaction. The primary key decides between concurrent claimers;
/// an expired record is replaced.
pub async fn claim(tx: &mut Tx<'_>, request: &ClaimRequest) -> StoreResult<Claim> {
    let scope = &request.scope;
    // Twice at most: a second round follows only the removal of an expired record.
    for _ in 0..2 {
        let inserted = on_tx!(tx, |conn| {
            sqlx::query(
                "INSERT INTO idempotency_keys
                   (partner_id, idempotency_key, fingerprint, state, locked_until, created_at, expires_at, node_id)
                 VALUES ($1, $2, $3, 'in_flight', $4, $5, $6, $7)
                 ON CONFLICT (partner_id, idempotency_key) DO NOTHING",
            )
            .bind(scope.partner.get())
            .bind(&scope.key)
            .bind(&request.fingerprint[..])
            .bind(request.now.saturating_add(request.lease_ms))
            .bind(request.now)
            .bind(request.now.saturating_add(request.ttl_ms))
            .bind(request.node.as_deref())
            .execute(conn)
            .await?
            .rows_affected()
        });
        if inserted == 1 {
            return Ok(Claim::Acquired);
        }
        let row: Option<KeyRow> = on_tx!(tx, |conn| {
            sqlx::query_as(
                "SELECT fingerprint, state, locked_until, response_status, response_headers, response_body, expires_at
                 FROM idempotency_keys WHERE partner_id = $1 AND idempotency_key = $2",
            )
            .bind(scope.partner.get())
            .bind(&scope.key)
            .fetch_optional(conn)
            .await?
        });
        let Some(row) = row else { continue };
        if row.expires_at <= request.now {
            on_tx!(tx, |conn| {
                sqlx::query(
                    "DELETE FROM idempotency_keys WHERE partner_id = $1 AND idempotency_key = $2 AND expires_at <= $3",
                )
                .bind(scope.partner.get())
                .bind(&scope.key)
                .bind(request.now)
                .execute(conn)
                .await
                .map(drop)?
            });
            continue;
        }
        return match judge(row, request) {
            Verdict::Final(claim) => Ok(claim),
            Verdict::TakeOver { locked_until } => {
                let taken = on_tx!(tx, |conn| {
                    sqlx::query(
                        "UPDATE idempotency_keys SET locked_until = $3, node_id = $5
                         WHERE partner_id = $1 AND idempotency_key = $2 AND state = 'in_flight' AND locked_until = $4",
                    )
                    .bind(scope.partner.get())
                    .bind(&scope.key)
                    .bind(request.now.saturating_add(request.lease_ms))
                    .bind(locked_until)
                    .bind(request.node.as_deref())
                    .execute(conn)
                    .await?
                    .rows_affected()
                });
                Ok(if taken == 1 { Claim::Acquired } else { Claim::InFlight })
            }
        };
    }
    Ok(Claim::InFlight)
}

impl Store {
    /// Claims a key in a transaction of its own (the group-commit writer batches claims instead).
    pub async fn claim_idempotency_key(&self, request: &ClaimRequest) -> StoreResult<Claim> {
        let request = request.clone();
        self.write(move |mut tx| pin_unit(async move { claim(&mut tx, &request).await })).await
    }

    /// Stores the final response of a claimed key.
    pub async fn complete_idempotency_key(
        &self,
        scope: &IdempotencyScope,
        response: &StoredResponse,
    ) -> StoreResult<()> {
        let (scope, response) = (scope.clone(), response.clone());
        self.write(move |mut tx| pin_unit(async move { complete(&mut tx, &scope, &response).await })).await
    }

    /// Gives up an unfinished claim so that a retry may run (the request failed transiently).
    pub async fn release_idempotency_key(&self, scope: &IdempotencyScope) -> StoreResult<()> {
        with_pool!(self, write, |pool| {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE partner_id = $1 AND idempotency_key = $2 AND state = 'in_flight'",
            )
            .bind(scope.partner.get())
            .bind(&scope.key)
            .execute(pool)
            .await
            .map(drop)?
        });
        Ok(())
    }

    /// Deletes records past their retention; returns how many.
    pub async fn purge_expired_idempotency_keys(&self, now: i64) -> StoreResult<u64> {
        let deleted = with_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted)
    }
}
