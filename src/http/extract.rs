//! Extractors shared by the surfaces: JSON bodies with problem+json rejections, and the
//! partner credentials (`PartnerApiKey` header, `Authorization: Bearer`).

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::{ApiError, Challenge};
use crate::auth::cache::VerifiedCredentials;
use crate::auth::credentials::{PresentedApiKey, digests_match};
use crate::domain::now_ms;
use crate::store::Partner;

/// `Json<T>` whose rejections are problem+json (400/413/415) instead of axum's plain text.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state).await.map(|Json(value)| ApiJson(value)).map_err(ApiError::from)
    }
}

/// `Query<T>` whose rejection is a problem+json 400 naming the query string, instead of axum's
/// plain-text one.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state).await.map(|q| ApiQuery(q.0)).map_err(|rejection| {
            let message = rejection.body_text();
            let message = message.trim_start_matches("Failed to deserialize query string: ");
            ApiError::invalid_field("The query string is not valid.", "query", message)
        })
    }
}

/// `Path<T>` whose rejection is a problem+json 404: a path segment that cannot be the id it
/// stands for names nothing (axum's own answer is a plain-text 400).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|p| ApiPath(p.0)).map_err(|rejection| {
            let client_sent_it = matches!(&rejection, PathRejection::FailedToDeserializePathParams(e) if matches!(
                e.kind(),
                ErrorKind::ParseErrorAtKey { .. } | ErrorKind::ParseErrorAtIndex { .. } | ErrorKind::ParseError { .. }
                    | ErrorKind::InvalidUtf8InPathParam { .. }
            ));
            if client_sent_it {
                ApiError::NotFound("Nothing has this id: a path segment is not a valid id of its kind.".into())
            } else {
                // An extractor that does not fit its route (wrong arity, unsupported type) is a bug
                // here, which must show as one rather than as a quiet 404.
                ApiError::Internal(anyhow::anyhow!("path extractor does not fit its route: {rejection}"))
            }
        })
    }
}

pub const API_KEY_HEADER: &str = "partnerapikey";

const MISSING_API_KEY: &str = "Send the partner's API key in the `PartnerApiKey` header.";
const INVALID_API_KEY: &str = "The API key is not valid.";
const MISSING_BEARER: &str = "Send an access token from `POST /oauth/token` as `Authorization: Bearer <token>`.";
const INVALID_BEARER: &str = "The access token is invalid or has expired.";

/// Resolves a `PartnerApiKey` header value to its partner.
pub async fn partner_from_api_key(state: &AppState, raw: &str) -> Result<Partner, ApiError> {
    let invalid = || ApiError::Unauthenticated { challenge: Challenge::ApiKey, detail: INVALID_API_KEY };
    let presented = PresentedApiKey::parse(raw.trim()).ok_or_else(invalid)?;
    let (cache, now) = (state.settings.auth.credential_cache, now_ms());
    // The cache is keyed by the digest of the whole key, so a hit is a constant-time-equal key.
    if let Some(partner) = state.verified_api_keys.get(&presented.hash, now).filter(|_| cache) {
        return Ok(partner);
    }
    let record = state.store.find_api_key(&presented.id).await?.ok_or_else(invalid)?;
    if !(digests_match(&record.secret_hash, &presented.hash) && record.usable_at(now)) {
        return Err(invalid());
    }
    if cache {
        state.verified_api_keys.insert(
            presented.hash,
            record.partner.clone(),
            record.expires_at.unwrap_or(i64::MAX),
            now,
        );
    }
    Ok(record.partner)
}

/// Resolves a bearer access token to its partner (verified once, then served from the cache).
pub async fn partner_from_bearer(state: &AppState, token: &str) -> Result<Partner, ApiError> {
    let invalid =
        || ApiError::Unauthenticated { challenge: Challenge::Bearer { invalid: true }, detail: INVALID_BEARER };
    let now = now_ms();
    let cache = state.settings.auth.credential_cache;
    let key = VerifiedCredentials::key(token);
    if let Some(partner) = state.verified_tokens.get(&key, now).filter(|_| cache) {
        return Ok(partner);
    }
    let claims = state.keys.verify_partner_token(token).await.map_err(|e| match e {
        crate::auth::TokenError::Store(store) => ApiError::from(store),
        _ => invalid(),
    })?;
    let id = claims.partner_id().ok_or_else(invalid)?;
    // The partner row is read so that a removed partner's tokens stop working.
    let partner = state.store.find_partner(id).await?.ok_or_else(invalid)?;
    if cache {
        state.verified_tokens.insert(key, partner.clone(), claims.exp.saturating_mul(1000), now);
    }
    Ok(partner)
}

pub(super) fn bearer_token(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?;
    let value = value.to_str().map_err(|_| ());
    Some(value.and_then(|v| match v.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(()),
    }))
}

/// The request's bearer token, or the 401 that asks for one (`missing`) or refuses a malformed
/// `Authorization` header (`invalid`).
pub(super) fn required_bearer<'h>(
    headers: &'h HeaderMap,
    missing: &'static str,
    invalid: &'static str,
) -> Result<&'h str, ApiError> {
    match bearer_token(headers) {
        None => Err(ApiError::Unauthenticated { challenge: Challenge::Bearer { invalid: false }, detail: missing }),
        Some(Err(())) => {
            Err(ApiError::Unauthenticated { challenge: Challenge::Bearer { invalid: true }, detail: invalid })
        }
        Some(Ok(token)) => Ok(token),
    }
}

/// A partner authenticated by the `PartnerApiKey` header.
pub struct ApiKeyPartner(pub Partner);

impl FromRequestParts<AppState> for ApiKeyPartner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(API_KEY_HEADER) else {
            return Err(ApiError::Unauthenticated { challenge: Challenge::ApiKey, detail: MISSING_API_KEY });
        };
        let raw = value
            .to_str()
            .map_err(|_| ApiError::Unauthenticated { challenge: Challenge::ApiKey, detail: INVALID_API_KEY })?;
        partner_from_api_key(state, raw).await.map(ApiKeyPartner)
    }
}

/// A partner authenticated by a bearer access token.
pub struct BearerPartner(pub Partner);

impl FromRequestParts<AppState> for BearerPartner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = required_bearer(&parts.headers, MISSING_BEARER, INVALID_BEARER)?;
        partner_from_bearer(state, token).await.map(BearerPartner)
    }
}

/// A partner authenticated by either credential (bearer token preferred when both are sent).
pub struct AnyPartner(pub Partner);

impl FromRequestParts<AppState> for AnyPartner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            return BearerPartner::from_request_parts(parts, state).await.map(|BearerPartner(p)| AnyPartner(p));
        }
        if parts.headers.contains_key(API_KEY_HEADER) {
            return ApiKeyPartner::from_request_parts(parts, state).await.map(|ApiKeyPartner(p)| AnyPartner(p));
        }
        Err(ApiError::Unauthenticated {
            challenge: Challenge::Partner,
            detail: "Send `Authorization: Bearer <token>` or the `PartnerApiKey` header.",
        })
    }
}

const MISSING_USER_TOKEN: &str = "Send the end user's access token as `Authorization: Bearer <token>`.";
const INVALID_USER_TOKEN: &str = "The access token is invalid, has expired, or its session was revoked.";

/// An end user (seed 003) authenticated by an access token whose session is still active.
pub struct EndUserAuth {
    pub partner: crate::domain::PartnerId,
    pub user: crate::domain::PublicUserId,
    pub claims: crate::auth::end_user::UserClaims,
}

impl EndUserAuth {
    /// RFC 6750 §3.1: a valid token without `scope` is 403 `insufficient_scope`.
    pub fn require(&self, scope: &'static str) -> Result<&Self, ApiError> {
        if self.claims.scope.split(' ').any(|s| s == scope) {
            Ok(self)
        } else {
            Err(ApiError::InsufficientScope { scope })
        }
    }
}

impl FromRequestParts<AppState> for EndUserAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let invalid =
            || ApiError::Unauthenticated { challenge: Challenge::Bearer { invalid: true }, detail: INVALID_USER_TOKEN };
        let token = required_bearer(&parts.headers, MISSING_USER_TOKEN, INVALID_USER_TOKEN)?;
        let claims = state.keys.verify_user_token(token).await.map_err(|_| invalid())?;
        let (Some(partner), Ok(user)) = (claims.partner_id(), claims.sub.parse()) else {
            return Err(invalid());
        };
        // The session must be this very user's: `sid` and `sub` are checked together.
        if !state.store.token_family_active(&claims.sid, partner, &user).await? {
            return Err(invalid());
        }
        Ok(Self { partner, user, claims })
    }
}
