//! OAuth 2.0: partners' `client_credentials` tokens (RFC 6749 §4.4), end users' refresh-token
//! rotation (RFC 6749 §6, RFC 9700 §4.14), token revocation (RFC 7009), and the JWKS that
//! verifies every access token.

use std::time::Duration;

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, OAuthErrorCode, no_store};
use crate::auth::credentials::{digests_match, hash_secret};
use crate::domain::now_ms;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(token)).routes(routes!(revoke)).routes(routes!(jwks))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    /// `client_credentials` (partners) or `refresh_token` (end users).
    #[schema(value_type = String, pattern = "^(client_credentials|refresh_token)$")]
    grant_type: Option<String>,
    /// With `grant_type=refresh_token`: the end user's current refresh token.
    refresh_token: Option<String>,
    /// Only when the client does not authenticate with HTTP Basic.
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = PartnerTokenResponse)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// Issues a partner access token for client credentials sent with HTTP Basic or in the form.
#[utoipa::path(post, path = "/oauth/token", tag = "OAuth 2.0",
    security(("clientBasic" = []), ()),
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = super::error::OAuthError, description = "RFC 6749 error: invalid_request, invalid_grant, unsupported_grant_type, invalid_scope"),
        (status = 401, body = super::error::OAuthError, description = "RFC 6749 error: invalid_client (with `WWW-Authenticate: Basic`)"),
        (status = 429, body = super::error::Problem, description = "Too many refresh attempts from this address; see `Retry-After`"),
    ))]
pub async fn token(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<TokenRequest>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let Form(form) = form?;
    if form.grant_type.as_deref() == Some("refresh_token") {
        let limits = &state.signup_limits;
        limits.check_ip(limits.client_ip(&headers, peer.as_ref().map(|Extension(info)| info)))?;
        return refresh(&state, form.refresh_token.as_deref()).await;
    }
    let (client_id, secret) = client_authentication(&headers, form.client_id, form.client_secret)?;
    match form.grant_type.as_deref() {
        None | Some("") => return Err(ApiError::oauth(OAuthErrorCode::InvalidRequest, "grant_type is required")),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(ApiError::oauth(
                OAuthErrorCode::UnsupportedGrantType,
                "supported grant types: client_credentials, refresh_token",
            ));
        }
    }

    let invalid_client = || ApiError::oauth(OAuthErrorCode::InvalidClient, "client authentication failed");
    let presented = hash_secret(&secret);
    let record = state.store.find_client(&client_id).await?.ok_or_else(invalid_client)?;
    if !digests_match(&record.secret_hash, &presented) || record.revoked_at.is_some() {
        return Err(invalid_client());
    }

    let ttl = Duration::from_secs(state.settings.auth.access_token_ttl_secs);
    let access_token = state
        .keys
        .issue_partner_token(&record.partner, &client_id, now_ms() / 1000, ttl)
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut response =
        Json(TokenResponse { access_token, token_type: "Bearer", expires_in: ttl.as_secs() }).into_response();
    no_store(&mut response);
    Ok(response)
}

/// The client's id and secret, from HTTP Basic or from the form (exactly one of them).
fn client_authentication(
    headers: &HeaderMap,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<(String, String), ApiError> {
    match (basic_credentials(headers)?, client_id, client_secret) {
        (Some(_), _, Some(_)) => {
            Err(ApiError::oauth(OAuthErrorCode::InvalidRequest, "use exactly one client authentication method"))
        }
        (Some(pair), _, None) => Ok(pair),
        (None, Some(id), Some(secret)) => Ok((id, secret)),
        (None, _, _) => Err(ApiError::oauth(OAuthErrorCode::InvalidClient, "client authentication is required")),
    }
}

/// Spends an end user's refresh token for a new access token and a new refresh token of the
/// same family (`core::signup`, rotation).
async fn refresh(state: &AppState, presented: Option<&str>) -> Result<Response, ApiError> {
    let presented = presented
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::oauth(OAuthErrorCode::InvalidRequest, "refresh_token is required"))?;
    let signed_in = state.signups().refresh(presented, now_ms()).await?;
    super::signup::token_response(state, &signed_in)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RevokeRequest {
    /// A refresh token, or an end user's access token (either ends the whole session).
    #[schema(value_type = String, min_length = 1)]
    token: Option<String>,
    /// `refresh_token` or `access_token`; only a hint (RFC 7009 §2.1).
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// Revokes an end user's session by one of its tokens (RFC 7009). Answers 200 whether or not
/// the token was known, so the endpoint cannot be used to probe tokens.
#[utoipa::path(post, path = "/oauth/revoke", tag = "OAuth 2.0",
    request_body(content = RevokeRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked, or not a known token"), (status = 400, body = super::error::OAuthError, description = "RFC 6749 error: invalid_request")))]
pub async fn revoke(
    State(state): State<AppState>,
    form: Result<Form<RevokeRequest>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let Form(form) = form?;
    let token = form
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::oauth(OAuthErrorCode::InvalidRequest, "token is required"))?;
    crate::core::signup::revoke_session(&state.store, &state.keys, &token, now_ms()).await?;
    let mut response = axum::http::StatusCode::OK.into_response();
    no_store(&mut response);
    Ok(response)
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(id) ":" urlencode(secret))`.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let bad = || ApiError::oauth(OAuthErrorCode::InvalidClient, "malformed HTTP Basic credentials");
    let value = value.to_str().map_err(|_| bad())?;
    let Some((scheme, encoded)) = value.split_once(' ') else { return Err(bad()) };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8().map(|c| c.into_owned());
    Ok(Some((unescape(id).map_err(|_| bad())?, unescape(secret).map_err(|_| bad())?)))
}

/// The public keys that verify Onboard's access tokens (RFC 7517), current and recently retired.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "OAuth 2.0", responses((status = 200, body = JwkSet, description = "The public keys access tokens are signed with (RFC 7517)")))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.keys.jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

/// RFC 7517 key set, as `KeyRing::jwks` builds it. Described for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// One Ed25519 public key (RFC 8037).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "k1", "alg": "EdDSA", "use": "sig"}))]
#[allow(dead_code)]
pub struct Jwk {
    kty: String,
    crv: String,
    x: String,
    kid: String,
    alg: String,
    #[schema(rename = "use")]
    key_use: String,
}
