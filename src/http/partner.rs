//! The calling partner's own account: `GET /partner` (who am I, like Stripe's `GET /v1/account`)
//! and `POST /partner/api-keys` (roll the API key, old keys expiring after a grace period).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::error::responses::{BadRequest, PayloadTooLarge, Unauthorized, UnsupportedMediaType};
use super::extract::{AnyPartner, ApiJson};
use crate::core;
use crate::domain::Email;
use crate::domain::cip::RequiredConsents;
use crate::domain::consent::ConsentConfirmation;
use crate::domain::now_ms;
use crate::store::Partner;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Longest grace period for keys being rolled: 30 days.
const MAX_GRACE_SECS: i64 = 30 * 24 * 3600;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(whoami, update_settings)).routes(routes!(roll_api_key))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerView {
    partner_id: i64,
    name: String,
    environment: crate::domain::Environment,
    /// Consents (`privacy`, `contract`) seed-002 users must give before their account opens.
    required_consents: Vec<String>,
    /// How they are confirmed: `partner` (the partner posts them) or `otp` (the user enters a
    /// code sent by SMS or e-mail).
    consent_confirmation: ConsentConfirmation,
    /// Where Onboard writes about the integration (a webhook endpoint disabled, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_email: Option<String>,
}

impl PartnerView {
    async fn of(state: &AppState, p: Partner) -> Result<Self, ApiError> {
        let consents = state.store.required_consents(p.id).await?;
        let consent_confirmation = state.store.consent_confirmation(p.id).await?;
        let contact_email = state.store.partner_contact_email(p.id).await?;
        Ok(Self {
            contact_email,
            consent_confirmation,
            partner_id: p.id.get(),
            name: p.name,
            environment: p.environment,
            required_consents: consents.names().into_iter().map(str::to_owned).collect(),
        })
    }
}

/// The partner that the `PartnerApiKey` header or bearer token authenticates.
#[utoipa::path(get, path = "/partner", tag = "Partner account",
    security(("bearer" = []), ("partnerApiKey" = [])),
    responses(
        (status = 200, body = PartnerView),
        Unauthorized,
    ))]
pub async fn whoami(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
) -> Result<Json<PartnerView>, ApiError> {
    Ok(Json(PartnerView::of(&state, partner).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartnerSettings {
    /// Any of `privacy`, `contract` (empty: none required).
    required_consents: Option<Vec<String>>,
    /// `partner` (consents posted as booleans) or `otp` (confirmed with a one-time code).
    consent_confirmation: Option<ConsentConfirmation>,
    /// Where Onboard writes about the integration (a webhook endpoint disabled, say).
    contact_email: Option<String>,
}

/// Changes the calling partner's settings.
#[utoipa::path(patch, path = "/partner", tag = "Partner account",
    security(("bearer" = []), ("partnerApiKey" = [])),
    request_body = PartnerSettings,
    responses(
        (status = 200, body = PartnerView),
        BadRequest, Unauthorized,
        UnsupportedMediaType,
    ))]
pub async fn update_settings(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiJson(body): ApiJson<PartnerSettings>,
) -> Result<Json<PartnerView>, ApiError> {
    if body.required_consents.is_none() && body.consent_confirmation.is_none() && body.contact_email.is_none() {
        let message = "send requiredConsents, consentConfirmation and/or contactEmail";
        return Err(ApiError::invalid_field("The request changes nothing.", "requiredConsents", message));
    }
    let required = match &body.required_consents {
        Some(required) => {
            if let Some(unknown) = required.iter().find(|c| !["privacy", "contract"].contains(&c.as_str())) {
                let message = format!("{unknown:?} is not a consent: use privacy and/or contract");
                return Err(ApiError::invalid_field("The request has invalid fields.", "requiredConsents", message));
            }
            let wants = |consent: &str| required.iter().any(|c| c == consent);
            Some(RequiredConsents { privacy: wants("privacy"), contract: wants("contract") })
        }
        None => None,
    };
    let contact_email = match body.contact_email.as_deref().map(Email::parse) {
        Some(Err(_)) => {
            return Err(ApiError::invalid_field(
                "The request has invalid fields.",
                "contactEmail",
                "is not an e-mail address",
            ));
        }
        parsed => parsed.and_then(Result::ok),
    };
    let settings = core::partners::PartnerSettings {
        required_consents: required,
        consent_confirmation: body.consent_confirmation,
        contact_email,
    };
    core::partners::set_settings(&state.store, &partner, settings).await?;
    Ok(Json(PartnerView::of(&state, partner).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollApiKey {
    /// Seconds the partner's current keys keep working (0 revokes them now; at most 30 days).
    expire_current_keys_in_seconds: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolledApiKey {
    /// The new key. It is shown only in this response.
    api_key: String,
    /// When the previous keys stop working, in milliseconds since the Unix epoch.
    previous_keys_expire_at: i64,
}

/// Issues a new API key for the calling partner.
#[utoipa::path(post, path = "/partner/api-keys", tag = "Partner account",
    security(("bearer" = []), ("partnerApiKey" = [])),
    request_body = RollApiKey,
    responses(
        (status = 201, body = RolledApiKey),
        BadRequest, Unauthorized, PayloadTooLarge, UnsupportedMediaType,
    ))]
pub async fn roll_api_key(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiJson(body): ApiJson<RollApiKey>,
) -> Result<(StatusCode, Json<RolledApiKey>), ApiError> {
    let grace = body.expire_current_keys_in_seconds;
    if !(0..=MAX_GRACE_SECS).contains(&grace) {
        let message = format!("must be between 0 and {MAX_GRACE_SECS}");
        return Err(ApiError::invalid_field("The request has invalid fields.", "expireCurrentKeysInSeconds", message));
    }
    let grace = Duration::from_secs(grace.unsigned_abs());
    let actor = format!("partner:{}", partner.id);
    let rotated = core::partners::rotate_api_key(&state.store, &partner, grace, &actor, now_ms())
        .await?
        .ok_or_else(|| ApiError::NotFound("The partner no longer exists.".into()))?;
    // Cached verifications would outlive the new expiry of the old keys on this node.
    state.verified_api_keys.clear();
    let response = RolledApiKey {
        api_key: rotated.api_key.expose_secret().to_owned(),
        previous_keys_expire_at: rotated.previous_keys_expire_at,
    };
    Ok((StatusCode::CREATED, Json(response)))
}
