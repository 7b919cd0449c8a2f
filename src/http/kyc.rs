//! Seed 003 step 3: the signed-in user's profile (`PUT /me/profile`), the SDK access token for
//! identity verification (`POST /kyc/access-token`, and `POST /users/{userId}/kyc/access-token`
//! for a partner's seed-002 prospects), Sumsub's webhooks (`POST /webhooks/kyc/sumsub`), and an
//! operator's per-partner KYC settings (`PUT /admin/partners/{partnerId}/kyc`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::admin::StaffAuth;
use super::error::responses::{BadRequest, UnsupportedMediaType};
use super::error::{ApiError, Challenge};
use super::extract::{AnyPartner, ApiJson, ApiPath, ApiQuery, EndUserAuth};
use super::fields::object;
use super::prospects::{UserStatus, move_error, own_prospect, parse_registration, today, wake_checks};
use crate::auth::staff::StaffRole;
use crate::core::kyc::{self, ConfigError, KycConfig, Profile};
use crate::domain::kyc::ProviderKind;
use crate::domain::{Email, Environment, PartnerId, now_ms};
use crate::kyc::{AccessToken, Inbound, KycError};
use crate::store::{Lookup, ProspectRecord};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_profile))
        .routes(routes!(user_access_token))
        .routes(routes!(prospect_access_token))
        .routes(routes!(sumsub_webhook))
        .routes(routes!(configure))
}

const INVALID: &str = "The request has invalid fields.";

impl From<KycError> for ApiError {
    fn from(err: KycError) -> Self {
        match err {
            KycError::NotConfigured | KycError::ProfileFirst | KycError::NotRequired => {
                ApiError::Conflict(format!("{}.", capitalised(&err.to_string())))
            }
            KycError::Unauthenticated => ApiError::Unauthenticated {
                challenge: Challenge::Bearer { invalid: true },
                detail: "The X-Payload-Digest header is missing or does not match the body.",
            },
            KycError::Provider(e) => {
                tracing::warn!(error = %e, "KYC provider call failed");
                ApiError::BadGateway(
                    "The identity verification provider did not answer as expected; retry shortly.".into(),
                )
            }
            KycError::Sealed(e) => ApiError::Internal(e.into()),
            KycError::Move(e) => move_error(e),
            KycError::Store(e) => e.into(),
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The user's profile: seed 002's person fields (the e-mail is the one signed up with).
#[utoipa::path(put, path = "/me/profile", tag = "Seed 003: sign-up and profile",
    request_body(content = super::prospects::ProfileParams),
    responses(
        (status = 200, body = UserStatus, description = "In CIP: the validators run, then identity verification"),
        (status = 400, description = "Invalid fields", body = super::error::Problem),
        (status = 403, description = "The token lacks `profile:write`", body = super::error::Problem),
        (status = 409, description = "The phone number is another user's, or the user's CIP is past this point", body = super::error::Problem), UnsupportedMediaType),
    security(("bearer" = [])))]
pub async fn put_profile(
    State(state): State<AppState>,
    auth: EndUserAuth,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<UserStatus>, ApiError> {
    auth.require("profile:write")?;
    let mut body = object(body)?;
    if body.contains_key("email") {
        let message = "is the address the user signed up with; it is not part of the profile";
        return Err(ApiError::invalid_field(INVALID, "email", message));
    }
    let gone = || ApiError::NotFound("The access token's user no longer exists.".into());
    let user = state.store.end_user(auth.partner, &auth.user).await?.ok_or_else(gone)?;
    let email = user.email.as_deref().map(Email::parse).transpose().map_err(|e| ApiError::Internal(e.into()))?;
    if let Some(email) = &email {
        body.insert("email".into(), Value::from(email.as_str()));
    }
    let prospect =
        parse_registration(&body, today()).map_err(|errors| ApiError::Validation { detail: INVALID.into(), errors })?;
    let profile =
        Profile { user: auth.user.clone(), partner: auth.partner, prospect, actor: format!("user:{}", auth.user) };
    let to = kyc::submit_profile(&state.store, profile, now_ms()).await.map_err(move_error)?;
    wake_checks(&state);
    Ok(Json(UserStatus::new(auth.user.to_string(), Some(to))))
}

/// `POST /kyc/access-token`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KycAccessToken {
    /// Always `sumsub`: the SDK the token is for.
    provider: &'static str,
    token: String,
    level_name: String,
    expires_in: u64,
}

impl From<AccessToken> for KycAccessToken {
    fn from(t: AccessToken) -> Self {
        Self { provider: "sumsub", token: t.token, level_name: t.level_name, expires_in: t.expires_in }
    }
}

async fn access_token_for(state: &AppState, record: &ProspectRecord) -> Result<Json<KycAccessToken>, ApiError> {
    let partner = PartnerId::new(record.partner_id).map_err(|e| ApiError::Internal(e.into()))?;
    let sandbox = state.store.find_partner(partner).await?.is_some_and(|p| p.environment == Environment::Sandbox);
    Ok(Json(state.kyc.access_token(record, sandbox).await?.into()))
}

/// An SDK access token for the signed-in user's identity verification.
#[utoipa::path(post, path = "/kyc/access-token", tag = "Seed 003: sign-up and profile",
    responses(
        (status = 200, body = KycAccessToken),
        (status = 403, description = "The token lacks `kyc:submit`", body = super::error::Problem),
        (status = 409, description = "No profile yet, or KYC not configured for the partner", body = super::error::Problem),
        (status = 502, description = "The provider failed", body = super::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn user_access_token(
    State(state): State<AppState>,
    auth: EndUserAuth,
) -> Result<Json<KycAccessToken>, ApiError> {
    auth.require("kyc:submit")?;
    let gone = || ApiError::NotFound("The access token's user no longer exists.".into());
    let record =
        state.store.find_prospect(auth.partner, Lookup::PublicId(auth.user.as_str())).await?.ok_or_else(gone)?;
    access_token_for(&state, &record).await
}

/// An SDK access token for a partner's seed-002 prospect (when the partner requires KYC).
#[utoipa::path(post, path = "/users/{userId}/kyc/access-token", tag = "Seed 002: prospects and CIP",
    params(("userId" = String, Path, description = "usr:<uuid>")),
    responses((status = 200, body = KycAccessToken), (status = 404, description = "Not this partner's user", body = super::error::Problem),
        (status = 409, description = "KYC is not part of this user's onboarding", body = super::error::Problem)),
    security(("bearer" = []), ("partnerApiKey" = [])))]
pub async fn prospect_access_token(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<KycAccessToken>, ApiError> {
    let record = own_prospect(&state, partner.id, &user_id).await?;
    access_token_for(&state, &record).await
}

/// The webhook URL configured at Sumsub may name the partner (`?partnerId=7`): the digest is
/// then checked with its secret before the body is read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookTarget {
    partner_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookAccepted {
    /// What the event did: `moved`, `recorded`, `stale`, `duplicate` or `ignored`.
    effect: &'static str,
}

/// Sumsub's webhooks, authenticated by `X-Payload-Digest` over the raw body.
#[utoipa::path(post, path = "/webhooks/kyc/sumsub", tag = "Seed 003: identity verification",
    params(
        ("partnerId" = Option<i32>, Query, minimum = 1, description = "The partner whose webhook secret signs (recommended in the URL configured at Sumsub)"),
        ("X-Payload-Digest" = String, Header, description = "Hex HMAC of the raw body with the partner's webhook secret"),
        ("X-Payload-Digest-Alg" = Option<String>, Header, description = "HMAC_SHA1_HEX, HMAC_SHA256_HEX (default) or HMAC_SHA512_HEX"),
    ),
    request_body(content = SumsubWebhook),
    responses(
        (status = 200, body = WebhookAccepted),
        (status = 400, description = "`partnerId` is not a partner id", body = super::error::Problem),
        (status = 401, description = "Missing or wrong digest: nothing is changed", body = super::error::Problem),
    ))]
pub async fn sumsub_webhook(
    State(state): State<AppState>,
    ApiQuery(target): ApiQuery<WebhookTarget>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookAccepted>, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let partner = match target.partner_id.as_deref() {
        None => None,
        Some(raw) => Some(
            raw.parse::<PartnerId>()
                .map_err(|_| ApiError::invalid_field(INVALID, "partnerId", "must be the partner's numeric id"))?,
        ),
    };
    let inbound = Inbound {
        body: &body,
        alg: header("x-payload-digest-alg"),
        digest: header("x-payload-digest"),
        partner,
        source: "webhook",
        job: None,
    };
    let received = state.kyc.receive(inbound).await;
    match received {
        Ok(effect) => {
            tracing::info!(effect = effect.label(), "KYC webhook received");
            Ok(Json(WebhookAccepted { effect: effect.label() }))
        }
        Err(err) => {
            if matches!(err, KycError::Unauthenticated) {
                metrics::counter!("kyc_webhooks_rejected_total").increment(1);
            }
            Err(err.into())
        }
    }
}

/// An operator's KYC settings for one partner. Secrets are write-only.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KycSettingsRequest {
    /// `sumsub` or `sandbox` (sandbox partners only).
    #[schema(pattern = "^(sumsub|sandbox)$")]
    provider: String,
    level_name: String,
    #[serde(default)]
    required_for_prospects: bool,
    #[schema(value_type = Option<String>)]
    app_token: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    secret_key: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    webhook_secret: Option<SecretString>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KycSettingsView {
    partner_id: i64,
    provider: String,
    level_name: String,
    required_for_prospects: bool,
}

impl From<ConfigError> for ApiError {
    fn from(err: ConfigError) -> Self {
        match err {
            ConfigError::NoPartner => ApiError::NotFound("No partner has this id.".into()),
            ConfigError::Store(e) => e.into(),
            ConfigError::Invalid(_) | ConfigError::Missing(_) => {
                ApiError::invalid_field(INVALID, "body", format!("{}.", capitalised(&err.to_string())))
            }
            other => ApiError::Conflict(format!("{}.", capitalised(&other.to_string()))),
        }
    }
}

/// Set a partner's KYC provider, level, whether seed-002 prospects need KYC, and the provider
/// secrets (sealed at rest, never returned). Operator role; audited.
#[utoipa::path(put, path = "/admin/partners/{partnerId}/kyc", tag = "Staff",
    params(("partnerId" = i64, Path)),
    request_body = KycSettingsRequest,
    responses((status = 200, body = KycSettingsView), (status = 404, description = "No such partner", body = super::error::Problem),
        (status = 409, description = "A live partner without a KEK, or missing secrets", body = super::error::Problem), BadRequest, UnsupportedMediaType),
    security(("bearer" = [])))]
pub async fn configure(
    State(state): State<AppState>,
    staff: StaffAuth,
    ApiPath(partner_id): ApiPath<i64>,
    ApiJson(request): ApiJson<KycSettingsRequest>,
) -> Result<Json<KycSettingsView>, ApiError> {
    let staff = staff.require(StaffRole::Operator)?;
    let no_partner = || ApiError::NotFound("No partner has this id.".into());
    let partner = PartnerId::new(partner_id).map_err(|_| no_partner())?;
    let partner = state.store.find_partner(partner).await?.ok_or_else(no_partner)?;
    let provider = ProviderKind::parse(&request.provider).ok_or_else(|| {
        ApiError::invalid_field(INVALID, "provider", format!("must be one of {}", ProviderKind::NAMES))
    })?;
    let config = KycConfig {
        provider,
        level_name: request.level_name,
        required_for_prospects: request.required_for_prospects,
        app_token: request.app_token,
        secret_key: request.secret_key,
        webhook_secret: request.webhook_secret,
    };
    let actor = staff.actor();
    let (level_name, required) = (config.level_name.trim().to_owned(), config.required_for_prospects);
    kyc::configure(&state.store, state.kyc.kek(), &partner, config, &actor, now_ms()).await?;
    Ok(Json(KycSettingsView {
        partner_id,
        provider: provider.as_str().to_owned(),
        level_name,
        required_for_prospects: required,
    }))
}

/// The members of Sumsub's webhook body Onboard reads (others are kept as received). Described
/// for the OpenAPI document; `kyc::sumsub::parse_webhook` reads the raw body.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase", example = json!({
    "applicantId": "5cb56e8e0a975a35f333cb83", "inspectionId": "5cb56e8e0a975a35f333cb84",
    "correlationId": "req-a260b669-4f14-4bb5-a4c5-ac0218acb9a4", "externalUserId": "usr:0193a1b2-0c4d-7e6f-8a9b-0c1d2e3f4a5b",
    "levelName": "basic-kyc-level", "type": "applicantReviewed",
    "reviewResult": {"reviewAnswer": "GREEN"}, "reviewStatus": "completed", "createdAtMs": "2026-12-04 10:00:00.000"
}))]
#[allow(dead_code)]
pub struct SumsubWebhook {
    #[schema(rename = "type")]
    kind: String,
    applicant_id: String,
    /// The `usr:` id Onboard created the applicant with.
    external_user_id: String,
    level_name: Option<String>,
    /// `GREEN` or `RED`, with `reviewRejectType` (`RETRY`, `FINAL`) and `rejectLabels`.
    #[schema(value_type = Option<Object>)]
    review_result: Option<Value>,
    review_status: Option<String>,
    /// When Sumsub created the event; events apply in this order.
    created_at_ms: String,
}
