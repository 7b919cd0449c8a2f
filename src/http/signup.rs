//! Seed 003: two-step self sign-up (`POST /users` with header `partnerId`), and `GET /me` for
//! the end user it signs in.
//!
//! Step 1 (no `emailConfirmCode`) always answers `{}` once the input is valid: whether the
//! address already has an account decides only which e-mail is sent, never the answer, its
//! timing (both paths hash the password and write the same rows) or the throttle.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Map, Value};

use super::AppState;
use super::error::responses::UnsupportedMediaType;
use super::error::{ApiError, Challenge, FieldError, OAuthErrorCode, no_store};
use super::extract::{ApiJson, EndUserAuth};
use super::fields::{Problems, object};
use crate::auth::end_user::USER_SCOPE;
use crate::auth::passwords::HashError;
use crate::core::signup::{SignedIn, SignupError, SignupRequest};
use crate::domain::signup::{ConfirmCode, UserRole};
use crate::domain::{Email, PartnerId, now_ms};
use crate::mail::MAIL_JOB;
use crate::store::Partner;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_user)).routes(routes!(me))
}

pub(super) const FIELDS: [&str; 4] = ["email", "password", "userType", "emailConfirmCode"];
const CODE_FIELD: &str = "emailConfirmCode";
const INVALID: &str = "The request has invalid fields.";

/// Seed 003's token response, field for field.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = UserTokenResponse)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    refresh_token: String,
    scope: &'static str,
    expires_in: u64,
    /// `usr:<uuid>`.
    user_id: String,
}

/// What step 1 answers (seed 003): an empty object.
#[derive(Debug, Serialize)]
pub struct Started {}

/// `POST /users` answers 200 in both steps, with one of two bodies: described as `oneOf` an empty
/// object (step 1) and the token response (step 2). Never built.
pub struct SignupAnswer;

impl utoipa::PartialSchema for SignupAnswer {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let started = ObjectBuilder::new()
            .schema_type(Type::Object)
            .max_properties(Some(0))
            .description(Some("Step 1: a code was e-mailed; call again with `emailConfirmCode`"));
        OneOfBuilder::new().item(started).item(utoipa::openapi::Ref::from_schema_name("UserTokenResponse")).into()
    }
}

impl utoipa::ToSchema for SignupAnswer {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push((
            <TokenResponse as utoipa::ToSchema>::name().into(),
            <TokenResponse as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// The request, parsed. `code` decides the step.
pub(super) struct Parsed {
    email: Email,
    password: String,
    role: UserRole,
    code: Option<ConfirmCode>,
}

pub(super) fn parse_request(body: &Map<String, Value>) -> Result<Parsed, Vec<FieldError>> {
    let mut p = Problems::default();
    p.unknown_fields(body, &FIELDS);
    let email = p.parse(body, "email", true, Email::parse);
    let password = p.string(body, "password", true).map(str::to_owned);
    if password.as_deref() == Some("") {
        p.add("password", "must not be empty");
    }
    let role = p.parse(body, "userType", false, |raw| {
        UserRole::parse(raw).ok_or_else(|| format!("must be one of {}", UserRole::NAMES))
    });
    let code = match body.get(CODE_FIELD) {
        None | Some(Value::Null) => None,
        Some(_) => Some(p.parse(body, CODE_FIELD, true, |raw| {
            ConfirmCode::parse(raw).ok_or("must be the digits of the code we e-mailed")
        })),
    };
    match (email, password, code) {
        (Some(email), Some(password), code) if p.0.is_empty() => {
            Ok(Parsed { email, password, role: role.unwrap_or(UserRole::Customer), code: code.flatten() })
        }
        _ => Err(p.0),
    }
}

/// The `partnerId` header: an int32 naming an existing partner.
async fn partner_from_header(state: &AppState, headers: &HeaderMap) -> Result<Partner, ApiError> {
    let bad =
        |message: &str| ApiError::invalid_field("The partnerId header is missing or invalid.", "partnerId", message);
    let raw = headers.get("partnerid").ok_or_else(|| bad("is required"))?;
    let id = raw
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|v| i32::try_from(*v).is_ok())
        .ok_or_else(|| bad("must be an int32"))?;
    let id = PartnerId::new(id).map_err(|_| ApiError::NotFound("No partner has this partnerId.".into()))?;
    state.store.find_partner(id).await?.ok_or_else(|| ApiError::NotFound("No partner has this partnerId.".into()))
}

fn code_problem(message: &str) -> ApiError {
    ApiError::invalid_field("The confirmation code was not accepted.", CODE_FIELD, message)
}

fn password_problem(detail: &str, messages: impl IntoIterator<Item = String>) -> ApiError {
    ApiError::Validation {
        detail: detail.into(),
        errors: messages.into_iter().map(|message| FieldError { field: "password".into(), message }).collect(),
    }
}

const WRONG_CODE: &str = "is not the code we e-mailed for this address (or a newer one replaced it)";
const EXPIRED_CODE: &str = "has expired; send the request without emailConfirmCode to get a new one";
const EXHAUSTED_CODE: &str = "was tried too many times; send the request without emailConfirmCode to get a new one";

/// Every refusal of the sign-up flow and of refresh-token rotation, on the wire.
impl From<SignupError> for ApiError {
    fn from(err: SignupError) -> Self {
        match err {
            SignupError::Password(rules) => {
                password_problem("The password does not meet the policy.", rules.iter().map(ToString::to_string))
            }
            SignupError::TooSoon { retry_after_ms } => ApiError::TooManyRequests {
                detail: "A code was sent to this address moments ago; wait before asking for another.",
                retry_after_secs: u64::try_from(retry_after_ms).unwrap_or(1).div_ceil(1000).max(1),
            },
            SignupError::WrongCode => code_problem(WRONG_CODE),
            SignupError::ExpiredCode => code_problem(EXPIRED_CODE),
            SignupError::ExhaustedCode => code_problem(EXHAUSTED_CODE),
            SignupError::WrongPassword => {
                password_problem(INVALID, ["is not the password given in the first step".to_owned()])
            }
            SignupError::EmailTaken => ApiError::Conflict("An account with this e-mail address already exists.".into()),
            SignupError::InvalidRefreshToken => {
                ApiError::oauth(OAuthErrorCode::InvalidGrant, "the refresh token is invalid, expired or revoked")
            }
            SignupError::ReusedRefreshToken => ApiError::oauth(
                OAuthErrorCode::InvalidGrant,
                "the refresh token was already used; every token of its session is now revoked",
            ),
            SignupError::Hashing(HashError::Busy) => {
                ApiError::Unavailable { detail: "Sign-ups are busy right now; retry shortly.", retry_after_secs: 1 }
            }
            SignupError::Hashing(HashError::Failed(e)) => ApiError::Internal(anyhow::anyhow!(e)),
            SignupError::Store(e) => e.into(),
        }
    }
}

/// Creates a user in two steps (seed 003): without `emailConfirmCode` a code is e-mailed and
/// the answer is `{}`; with it, the user is created and signed in.
#[utoipa::path(post, path = "/users", operation_id = "createNewUser", tag = "Seed 003: sign-up and profile",
    params(("partnerId" = i32, Header, description = "The partner's numeric id")),
    request_body(content = CreateNewUser),
    responses(
        (status = 200, description = "Step 1: `{}` (a code is e-mailed). Step 2: the token response", body = SignupAnswer,
            examples(
                ("Step 1" = (value = json!({}))),
                ("Step 2" = (value = json!({"access_token": "eyJraWQiOisdvsdviOiJKV1QiLCJhb1joiYWNjb3VudHM6Y3JlYX1joiYWNjb3VudHM6Y3JlYXGciOiJSUzI1s", "token_type": "Bearer", "refresh_token": "eyJraWQiOiU2OTQ4ZC1joiYWNjb3VudHM6Y3JlYXRlIGFjU", "scope": "accounts:create accounts:read accounts:show ...", "expires_in": 86400, "user_id": "usr:f2e6948d-cb6a-4a6a-beb8-94svdsvs45"}))),
            )),
        (status = 400, description = "Invalid fields, each password rule broken, or a wrong/expired/exhausted code", body = super::error::Problem),
        (status = 404, description = "No partner has this partnerId", body = super::error::Problem),
        (status = 409, description = "Step 2: another registration took this address meanwhile", body = super::error::Problem),
        (status = 429, description = "Rate limited, or a code was sent less than a minute ago; see Retry-After", body = super::error::Problem),
        (status = 503, description = "The password hashing queue is full; see Retry-After", body = super::error::Problem),
        UnsupportedMediaType,
    ))]
pub async fn create_user(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: ApiJson<Value>,
) -> Result<Response, ApiError> {
    let limits = &state.signup_limits;
    limits.check_ip(limits.client_ip(&headers, peer.as_ref().map(|Extension(info)| info)))?;
    let partner = partner_from_header(&state, &headers).await?;
    limits.check_partner(partner.id)?;
    let parsed =
        parse_request(&object(body.0)?).map_err(|errors| ApiError::Validation { detail: INVALID.into(), errors })?;
    limits.check_email(partner.id, &parsed.email)?;
    let request = SignupRequest { partner, email: parsed.email, password: parsed.password, role: parsed.role };
    let signups = state.signups();
    match parsed.code {
        None => {
            signups.start(&request).await?;
            state.jobs.wake_kind(MAIL_JOB);
            Ok(Json(Started {}).into_response())
        }
        Some(code) => {
            let signed_in = signups.confirm(&request, &code, now_ms()).await?;
            token_response(&state, &signed_in)
        }
    }
}

/// The seed's token response for a signed-in end user.
pub fn token_response(state: &AppState, signed_in: &SignedIn) -> Result<Response, ApiError> {
    let ttl = Duration::from_secs(state.settings.signup.access_token_ttl_secs);
    let access_token = state
        .keys
        .issue_user_token(&signed_in.owner, now_ms() / 1000, ttl)
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut response = Json(TokenResponse {
        access_token,
        token_type: "Bearer",
        refresh_token: signed_in.refresh.token.expose_secret().to_owned(),
        scope: USER_SCOPE,
        expires_in: ttl.as_secs(),
        user_id: signed_in.owner.public_id.to_string(),
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}

/// The signed-in end user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    user_id: String,
    email: Option<String>,
    user_type: Option<String>,
    partner_id: i64,
    /// Where the user is in onboarding (null until KYC starts).
    status: Option<String>,
    status_detail: Option<String>,
    created_at: String,
}

/// The user an end-user access token (from `POST /users` step 2 or a refresh) belongs to.
#[utoipa::path(get, path = "/me", tag = "Seed 003: sign-up and profile",
    responses((status = 200, body = Me), (status = 401, description = "Missing, invalid, expired or revoked token", body = super::error::Problem),
        (status = 403, description = "The token lacks `profile:read`", body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn me(State(state): State<AppState>, auth: EndUserAuth) -> Result<Json<Me>, ApiError> {
    auth.require("profile:read")?;
    let invalid = || ApiError::Unauthenticated {
        challenge: Challenge::Bearer { invalid: true },
        detail: "The access token's user no longer exists.",
    };
    let partner = auth.partner;
    let user = state.store.end_user(partner, &auth.user).await?.ok_or_else(invalid)?;
    Ok(Json(Me {
        user_id: user.public_id,
        email: user.email,
        user_type: user.user_role,
        partner_id: partner.get(),
        status: user.cip_status,
        status_detail: user.cip_detail,
        created_at: super::rfc3339(user.created_at),
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<Parsed, Vec<FieldError>> {
        parse_request(body.as_object().unwrap())
    }

    #[test]
    fn the_seeds_requests_parse_into_their_steps() {
        let step1 =
            parse(json!({"userType": "CUSTOMER", "email": "user@example.com", "password": "A9#bL8@z"})).unwrap();
        assert!(step1.code.is_none());
        assert_eq!(step1.role, UserRole::Customer);
        let step2 = parse(json!({"userType": "CUSTOMER", "email": "user@example.com", "password": "A9#bL8@z", "emailConfirmCode": "12345"}))
            .unwrap();
        assert_eq!(step2.code.unwrap().expose(), "12345");
        assert_eq!(parse(json!({"email": "a@example.com", "password": "x"})).unwrap().role, UserRole::Customer);
    }

    #[test]
    fn every_bad_field_is_listed() {
        let errors =
            parse(json!({"email": "nope", "password": 5, "userType": "ADMIN", "emailConfirmCode": "12a", "x": 1}))
                .err()
                .unwrap();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["x", "email", "password", "userType", "emailConfirmCode"]);
        let errors = parse(json!({})).err().unwrap();
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["email", "password"]);
    }
}

/// Seed 003's "Create New User" body, as `parse_request` reads it. Described here for the
/// OpenAPI document; never built.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"userType": "CUSTOMER", "email": "user@example.com", "password": "A9#bL8@z", "emailConfirmCode": "12345"}))]
#[allow(dead_code)]
pub struct CreateNewUser {
    #[schema(format = Email)]
    email: String,
    /// 8 to 32 characters with lowercase and uppercase Latin letters, a digit and a symbol; the
    /// same in both steps.
    #[schema(min_length = 8, max_length = 32, format = Password)]
    password: String,
    /// Defaults to `CUSTOMER`.
    user_type: Option<UserRole>,
    /// Absent in step 1 (a code is e-mailed); the code in step 2. Sandbox partners: `12345`.
    #[schema(pattern = "^[0-9]{4,10}$")]
    email_confirm_code: Option<String>,
}
