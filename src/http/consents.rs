//! Seed 002's consents (`OtpPrivacyMissing`, `OtpContractMissing`): a code sent to the user for
//! one consent (`POST /users/{userId}/consents/{privacy|contract}/otp`), the consent posted back
//! with it or, for partners that collect consents themselves, as booleans
//! (`POST /users/{userId}/consents`), and the evidence (`GET /users/{userId}/consents`).
//! Partner credentials: `PartnerApiKey` or a bearer token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::error::responses::{BadRequest, NotFound, Unauthorized, UnsupportedMediaType};
use super::extract::{AnyPartner, ApiJson, ApiPath};
use super::fields::{Problems, object};
use super::prospects::{INVALID, UserStatus, move_error, own_id, own_prospect};
use crate::core::consents::{self, CodeEntered, CodeRequest, ConsentError, ConsentsStated, SentCode};
use crate::domain::consent::{ConsentCode, ConsentKind, DocumentVersion, OtpChannel};
use crate::domain::now_ms;
use crate::store::consents::ConsentEvidence;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(give, evidence)).routes(routes!(send_code))
}

/// Send the user a one-time code for one consent (`privacy` or `contract`), by SMS to the phone
/// number on file or by e-mail. A new code replaces the previous one; at most one a minute.
/// Sandbox partners' code is always `123456` (by SMS nothing is sent).
#[utoipa::path(post, path = "/users/{userId}/consents/{consent}/otp", tag = "Seed 002: prospects and CIP",
    security(("bearer" = []), ("partnerApiKey" = [])),
    params(("userId" = String, Path, description = "usr:<uuid>"), ("consent" = ConsentKind, Path)),
    request_body(content = CodeRequestBody),
    responses(
        (status = 202, body = SentCode, description = "The code is on its way"),
        BadRequest, Unauthorized, NotFound,
        (status = 409, description = "Consent already given, user not in onboarding, nothing on file for the channel, or no SMS provider", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "A code was sent less than `consents.resend_interval_secs` ago (`Retry-After`)", body = super::error::Problem, content_type = "application/problem+json"),
        UnsupportedMediaType,
    ))]
pub async fn send_code(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiPath((user_id, consent)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<SentCode>), ApiError> {
    let consent = ConsentKind::parse(&consent)
        .ok_or_else(|| ApiError::NotFound(format!("There is no {consent:?} consent: use privacy or contract.")))?;
    let body = object(body)?;
    let mut p = Problems::default();
    p.unknown_fields(&body, &["documentVersion", "channel"]);
    let channel = match body.get("channel") {
        None | Some(Value::Null) => Some(OtpChannel::Sms),
        Some(Value::String(s)) => OtpChannel::parse(s).or_else(|| {
            p.add("channel", format!("must be one of {}", OtpChannel::NAMES));
            None
        }),
        Some(_) => {
            p.add("channel", "must be a string");
            None
        }
    };
    let document = body.get("documentVersion").and_then(Value::as_str).and_then(DocumentVersion::parse);
    if document.is_none() {
        p.add(
            "documentVersion",
            "required: the version of the document the user is shown (1-64 of A-Z a-z 0-9 . _ : -)",
        );
    }
    let (Some(channel), Some(document), true) = (channel, document, p.0.is_empty()) else {
        return Err(ApiError::Validation { detail: INVALID.into(), errors: p.0 });
    };
    let record = own_prospect(&state, partner.id, &user_id).await?;
    let request = CodeRequest {
        user: own_id(&record)?,
        partner,
        consent,
        channel,
        document,
        sms_configured: state.sms.is_configured(),
    };
    let sent = consents::send_code(&state.store, &state.settings.consents, request, now_ms()).await?;
    state.jobs.wake();
    Ok((StatusCode::ACCEPTED, Json(sent)))
}

/// Record the user's consent: `{"privacy": true, "otp": "123456"}` with the code sent for it
/// (one consent per code), or, for partners set to collect consents themselves
/// (`consentConfirmation: partner`), `{"privacy": true, "contract": true}`.
#[utoipa::path(post, path = "/users/{userId}/consents", tag = "Seed 002: prospects and CIP",
    security(("bearer" = []), ("partnerApiKey" = [])),
    params(("userId" = String, Path, description = "usr:<uuid>")),
    request_body(content = ConsentsGiven),
    responses(
        (status = 200, body = UserStatus),
        BadRequest, Unauthorized, NotFound,
        (status = 409, description = "A code is required for this partner, or none was sent", body = super::error::Problem, content_type = "application/problem+json"),
        UnsupportedMediaType,
    ))]
pub async fn give(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiPath(user_id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<UserStatus>, ApiError> {
    let (privacy, contract, code) = parse_consents(body)?;
    let record = own_prospect(&state, partner.id, &user_id).await?;
    let (user, actor, now) = (own_id(&record)?, format!("partner:{}", partner.id), now_ms());
    let to = match code {
        Some(code) => {
            let consent = if privacy { ConsentKind::Privacy } else { ConsentKind::Contract };
            let entered = CodeEntered { partner, user, consent, code, actor };
            consents::give_by_code(&state.store, &state.settings.consents, entered, now).await?
        }
        None => {
            let stated = ConsentsStated { partner: partner.id, user, privacy, contract, actor };
            consents::give_stated(&state.store, stated, now).await?
        }
    };
    state.jobs.wake_kind(crate::core::onboarding::PROVISION_JOB);
    Ok(Json(UserStatus::new(record.public_id, to)))
}

/// `{"privacy"?: true, "contract"?: true, "otp"?: "123456"}`: at least one consent, and one only
/// with a code.
fn parse_consents(body: Value) -> Result<(bool, bool, Option<ConsentCode>), ApiError> {
    let body = object(body)?;
    let mut p = Problems::default();
    p.unknown_fields(&body, &["privacy", "contract", "otp"]);
    let mut flag = |field: &str| match body.get(field) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(true)) => true,
        Some(Value::Bool(false)) => {
            p.add(field, "a consent once given cannot be withdrawn here; send true or leave it out");
            false
        }
        Some(_) => {
            p.add(field, "must be true");
            false
        }
    };
    let (privacy, contract) = (flag("privacy"), flag("contract"));
    let code = match body.get("otp") {
        None | Some(Value::Null) => None,
        Some(raw) => {
            let code = raw.as_str().and_then(ConsentCode::parse);
            if code.is_none() {
                p.add("otp", "must be the six-digit code, as a string");
            }
            code
        }
    };
    if !privacy && !contract && p.0.is_empty() {
        p.add("privacy", "give privacy and/or contract consent");
    }
    if code.is_some() && privacy && contract {
        p.add("otp", "a code confirms one consent: send privacy or contract with it");
    }
    match p.0.is_empty() {
        true => Ok((privacy, contract, code)),
        false => Err(ApiError::Validation { detail: INVALID.into(), errors: p.0 }),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentRecord {
    user_id: String,
    /// Each consent as it was given, oldest first.
    #[schema(value_type = Vec<Object>)]
    consents: Vec<ConsentEvidence>,
}

/// How the user's consents were given: by code (when, to which masked address, which document
/// version) or as the partner's statement.
#[utoipa::path(get, path = "/users/{userId}/consents", tag = "Seed 002: prospects and CIP",
    security(("bearer" = []), ("partnerApiKey" = [])),
    params(("userId" = String, Path, description = "usr:<uuid>")),
    responses((status = 200, body = ConsentRecord), Unauthorized, NotFound))]
pub async fn evidence(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<ConsentRecord>, ApiError> {
    let record = own_prospect(&state, partner.id, &user_id).await?;
    let consents = state.store.consent_evidence(record.id).await?;
    Ok(Json(ConsentRecord { user_id: record.public_id, consents }))
}

const CODE_FIELD: &str = "otp";

/// Every refusal of the consent flow, on the wire.
impl From<ConsentError> for ApiError {
    fn from(err: ConsentError) -> Self {
        let code = |message: &str| ApiError::invalid_field("The code was not accepted.", CODE_FIELD, message);
        match err {
            ConsentError::NotFound => move_error(crate::core::onboarding::MoveError::NotFound),
            ConsentError::NotInOnboarding => {
                ApiError::Conflict("The user is not in onboarding: there are no consents to give.".into())
            }
            ConsentError::AlreadyGiven(consent) => {
                ApiError::Conflict(format!("The {consent} consent was already given."))
            }
            ConsentError::NoDestination(channel) => ApiError::Conflict(match channel {
                OtpChannel::Sms => "The user has no phone number on file; send the code by e-mail.".into(),
                OtpChannel::Email => "The user has no e-mail address on file; send the code by SMS.".into(),
            }),
            ConsentError::SmsUnavailable => {
                ApiError::Conflict("No SMS provider is configured on this server; send the code by e-mail.".into())
            }
            ConsentError::TooSoon { retry_after_ms } => ApiError::TooManyRequests {
                detail: "A code for this consent was sent moments ago; wait before asking for another.",
                retry_after_secs: u64::try_from(retry_after_ms).unwrap_or(1).div_ceil(1000).max(1),
            },
            ConsentError::CodeRequired => ApiError::Conflict(
                "This partner's users confirm consents with a one-time code: send one with \
                 POST /users/{userId}/consents/{consent}/otp and post it back as `otp`."
                    .into(),
            ),
            ConsentError::NoCode => ApiError::Conflict(
                "No code is waiting for this consent: send one first (or it was already used).".into(),
            ),
            ConsentError::WrongCode => code("is not the code sent for this consent (or a newer one replaced it)"),
            ConsentError::Expired => code("has expired; send a new one"),
            ConsentError::Exhausted => code("was tried too many times; send a new one"),
            ConsentError::Move(e) => move_error(e),
        }
    }
}

/// `POST /users/{userId}/consents/{consent}/otp`. Described for the OpenAPI document; never built.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"documentVersion": "privacy-2026-01", "channel": "sms"}))]
#[allow(dead_code)]
pub struct CodeRequestBody {
    /// The version of the document the user is shown.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    document_version: String,
    /// Defaults to `sms`.
    channel: Option<OtpChannel>,
}

/// `POST /users/{userId}/consents`: at least one consent; `otp` confirms exactly one.
/// Described for the OpenAPI document; never built.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"privacy": true, "otp": "123456"}))]
#[allow(dead_code)]
pub struct ConsentsGiven {
    privacy: Option<bool>,
    contract: Option<bool>,
    /// The six-digit code sent for the consent (sandbox partners: `123456`); absent for partners
    /// that collect consents themselves.
    #[schema(pattern = "^[0-9]{6}$")]
    otp: Option<String>,
}
