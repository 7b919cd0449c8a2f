//! `Idempotency-Key` on every POST (IETF httpapi idempotency-key draft, Stripe semantics):
//! the first final answer is stored with a fingerprint of the request; a repeat gets it back
//! (`Idempotent-Replayed: true`), the same key with another request gets 422, and a repeat while
//! the first is still running gets 409. Keys are per partner and enforced by the database.
//!
//! Handlers that write may finish the claim inside their own transaction (`CompleteWith`), so a
//! committed effect and its stored answer never diverge; otherwise it is finished here afterwards.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{AnyPartner, EndUserAuth};
use crate::domain::{now_ms, secs_to_ms};
use crate::store::{Claim, ClaimRequest, IdempotencyScope, StoredResponse};

/// How long Idempotency-Key answers are kept, and how long an unfinished request holds its key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencySettings {
    /// How long a stored answer is replayed for an `Idempotency-Key`.
    pub ttl_secs: u64,
    /// How long an unfinished request holds its key before another may take it over.
    pub lease_secs: u64,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self { ttl_secs: 24 * 3600, lease_secs: 60 }
    }
}

pub const HEADER: &str = "idempotency-key";

/// Put in the request's extensions when this request owns its key.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub scope: IdempotencyScope,
}

/// Put in a response's extensions by a handler that completed the claim in its transaction.
#[derive(Debug, Clone, Copy)]
struct CompletedByHandler;

pub fn mark_completed(response: &mut Response) {
    response.extensions_mut().insert(CompletedByHandler);
}

pub fn stored_into_response(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    }
    response
}

/// Accepts the draft's sf-string form (`"abc"`) and the bare form Stripe clients send.
pub(super) fn parse_key(raw: &HeaderValue) -> Option<String> {
    let text = raw.to_str().ok()?.trim();
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    let valid = (1..=255).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic() && b != b'"');
    valid.then(|| text.to_owned())
}

/// Same method, path, query and body (JSON compared by value, not by spacing or key order).
fn fingerprint(method: &Method, uri: &axum::http::Uri, body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(method.as_str());
    hash.update([0]);
    hash.update(uri.path_and_query().map_or("", |p| p.as_str()));
    hash.update([0]);
    match serde_json::from_slice::<serde_json::Value>(body) {
        // serde_json's map is ordered by key, so this is a canonical form.
        Ok(value) => hash.update(serde_json::to_vec(&value).unwrap_or_default()),
        Err(_) => hash.update(body),
    }
    hash.finalize().into()
}

/// Answers worth replaying: final outcomes, not ones that a retry could change.
fn is_final(status: StatusCode) -> bool {
    !(status.is_server_error()
        || matches!(
            status,
            StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::REQUEST_TIMEOUT
                | StatusCode::CONFLICT
                | StatusCode::TOO_MANY_REQUESTS
        ))
}

/// A malformed key is a 400 in the surface's own shape: seed 001 (`POST /User`, the one route
/// `aspnet::seed_001_routes` spells so) answers every 400 as ASP.NET's ValidationProblemDetails.
fn invalid_key(path: &str) -> Response {
    let message = "1 to 255 visible ASCII characters, optionally in double quotes";
    if path == "/User" {
        return super::aspnet::ValidationErrors::single("Idempotency-Key", message).into_response();
    }
    ApiError::invalid_field("The Idempotency-Key header is not valid.", "Idempotency-Key", message).into_response()
}

/// An end user's key, stored under the user's partner: a digest of user and key (fits the
/// column's 255 characters, and one user's keys never meet another's).
fn end_user_key(user: &crate::domain::PublicUserId, key: &str) -> String {
    let digest = Sha256::new().chain_update(user.as_str()).chain_update([0]).chain_update(key).finalize();
    format!("user:{}", hex::encode(digest))
}

/// A claim of `scope` now, with the configured lease and retention.
fn claim_request(state: &AppState, scope: &IdempotencyScope, fingerprint: [u8; 32]) -> ClaimRequest {
    let settings = &state.settings.idempotency;
    ClaimRequest {
        scope: scope.clone(),
        fingerprint,
        now: now_ms(),
        lease_ms: secs_to_ms(settings.lease_secs),
        ttl_ms: secs_to_ms(settings.ttl_secs),
        node: Some(state.node.clone()),
    }
}

pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(raw_key) = request.headers().get(HEADER) else { return next.run(request).await };
    let Some(key) = parse_key(raw_key) else { return invalid_key(request.uri().path()) };
    let (mut parts, body) = request.into_parts();
    // Keys belong to a partner, or to one end user of it (seed 003's routes); without valid
    // credentials the route itself answers 401.
    let scope = if let Ok(AnyPartner(partner)) = AnyPartner::from_request_parts(&mut parts, &state).await {
        IdempotencyScope { partner: partner.id, key }
    } else if let Ok(user) = EndUserAuth::from_request_parts(&mut parts, &state).await {
        IdempotencyScope { partner: user.partner, key: end_user_key(&user.user, &key) }
    } else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let Ok(bytes) = axum::body::to_bytes(body, state.settings.http.max_body_bytes).await else {
        return ApiError::PayloadTooLarge.into_response();
    };
    let fingerprint = fingerprint(&parts.method, &parts.uri, &bytes);
    match state.users.claim(claim_request(&state, &scope, fingerprint)).await {
        Err(err) => ApiError::from(err).into_response(),
        Ok(Claim::Mismatch) => ApiError::IdempotencyKeyReused.into_response(),
        Ok(Claim::InFlight) => ApiError::IdempotencyKeyInUse.into_response(),
        Ok(Claim::Replay(stored)) => {
            let mut response = stored_into_response(stored);
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        Ok(Claim::Acquired) => {
            parts.extensions.insert(IdempotencyClaim { scope: scope.clone() });
            let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            finish(&state, &scope, response).await
        }
    }
}

/// Stores a final answer (unless the handler already did) or releases the key for a retry.
async fn finish(state: &AppState, scope: &IdempotencyScope, response: Response) -> Response {
    if response.extensions().get::<CompletedByHandler>().is_some() {
        return response;
    }
    if !is_final(response.status()) {
        if let Err(err) = state.users.release(scope).await {
            tracing::warn!(error = ?err, "could not release an idempotency key; it frees itself when its lease ends");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(err) => return ApiError::Internal(anyhow::anyhow!("response body: {err}")).into_response(),
    };
    let keep = [header::CONTENT_TYPE, header::LOCATION];
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        headers: keep
            .iter()
            .filter_map(|name| Some((name.as_str().to_owned(), parts.headers.get(name)?.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    };
    let completed = state.users.complete(scope.clone(), stored).await;
    if let Err(err) = completed {
        tracing::warn!(error = ?err, "could not store an idempotent response; a retry will run again");
        let _ = state.users.release(scope).await;
    }
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_both_forms() {
        assert_eq!(parse_key(&HeaderValue::from_static("abc-123")).as_deref(), Some("abc-123"));
        assert_eq!(parse_key(&HeaderValue::from_static("\"8e03978e-40d5\"")).as_deref(), Some("8e03978e-40d5"));
        assert_eq!(parse_key(&HeaderValue::from_static("")), None);
        assert_eq!(parse_key(&HeaderValue::from_static("a b")), None);
        assert_eq!(parse_key(&HeaderValue::from_str(&"k".repeat(256)).unwrap()), None);
    }

    #[test]
    fn fingerprints_ignore_json_spacing_and_order_only() {
        let uri: axum::http::Uri = "/User".parse().unwrap();
        let a = fingerprint(&Method::POST, &uri, br#"{"a":1,"b":2}"#);
        assert_eq!(a, fingerprint(&Method::POST, &uri, b"{ \"b\": 2, \"a\": 1 }"));
        assert_ne!(a, fingerprint(&Method::POST, &uri, br#"{"a":1,"b":3}"#));
        assert_ne!(a, fingerprint(&Method::POST, &"/Other".parse().unwrap(), br#"{"a":1,"b":2}"#));
    }
}
