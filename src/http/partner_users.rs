//! Seed 000: `POST /partner/users` registers a user under the partner's own `externalUserId`
//! (201 the first time, 200 with the same body on a replay, 409 when the data differs), and
//! `GET /partner/users/{externalUserId}` reads it back. Authenticated by `PartnerApiKey`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::AppState;
use super::error::responses::{BadRequest, NotFound, Unauthorized, UnsupportedMediaType};
use super::error::{ApiError, FieldError};
use super::extract::{ApiJson, ApiKeyPartner, ApiPath};
use super::fields::Problems;
use crate::core::registrations::{self, PartnerRegistered};
use crate::domain::{Alias, AuthMethod, Email, ExternalUserId, PartnerRegistration, Phone, SignIn, UserType, now_ms};
use crate::store::RegistrationRecord;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register)).routes(routes!(show))
}

pub(super) const FIELDS: [&str; 5] = ["externalUserId", "method", "identifier", "type", "alias"];

pub(super) fn parse_registration(body: &Value) -> Result<PartnerRegistration, ApiError> {
    let Value::Object(body) = body else {
        return Err(ApiError::MalformedBody("The body must be a JSON object.".into()));
    };
    let mut problems = Problems::default();
    problems.unknown_fields(body, &FIELDS);
    let external_user_id = problems.parse(body, "externalUserId", true, ExternalUserId::parse);
    let method = match problems.optional_string(body, "method") {
        Some(None) => Some(AuthMethod::None),
        Some(Some(raw)) => {
            let method = AuthMethod::parse(raw);
            if method.is_none() {
                problems.add("method", format!("must be one of {}", AuthMethod::NAMES));
            }
            method
        }
        None => None,
    };
    let identifier = problems.optional_string(body, "identifier");
    let sign_in = match (method, identifier) {
        (Some(AuthMethod::None), Some(None)) => Some(SignIn::None),
        (Some(AuthMethod::None), Some(Some(_))) => {
            problems.add("identifier", "must be null or absent for method NONE");
            None
        }
        (Some(m @ (AuthMethod::Email | AuthMethod::PhoneNumber)), Some(None)) => {
            problems.add("identifier", format!("is required for method {}", m.as_str()));
            None
        }
        (Some(AuthMethod::Email), Some(Some(raw))) => match Email::parse(raw) {
            Ok(email) => Some(SignIn::Email(email)),
            Err(_) => {
                problems.add("identifier", "is not a valid e-mail address for method EMAIL");
                None
            }
        },
        (Some(AuthMethod::PhoneNumber), Some(Some(raw))) => match Phone::parse(raw) {
            Ok(phone) => Some(SignIn::Phone(phone)),
            Err(e) => {
                problems.add("identifier", format!("is not a valid phone number for method PHONE_NUMBER: it {e}"));
                None
            }
        },
        _ => None,
    };
    let user_type = match problems.optional_string(body, "type") {
        Some(Some(raw)) => {
            let user_type = UserType::parse(raw);
            if user_type.is_none() {
                problems.add("type", format!("must be one of {}", UserType::NAMES));
            }
            user_type
        }
        Some(None) => {
            problems.add("type", format!("is required: one of {}", UserType::NAMES));
            None
        }
        None => None,
    };
    let alias = match problems.optional_string(body, "alias") {
        Some(Some(raw)) => match Alias::parse(raw) {
            Ok(alias) => Some(Some(alias)),
            Err(e) => {
                problems.add("alias", e.to_string());
                None
            }
        },
        Some(None) => Some(None),
        None => None,
    };

    match (external_user_id, sign_in, user_type, alias) {
        (Some(external_user_id), Some(sign_in), Some(user_type), Some(alias)) if problems.0.is_empty() => {
            Ok(PartnerRegistration { external_user_id, sign_in, user_type, alias })
        }
        _ => Err(ApiError::Validation { detail: "The request has invalid fields.".into(), errors: problems.0 }),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredUser {
    /// `usr:<uuid>`.
    user_id: String,
    external_user_id: String,
    method: String,
    identifier: Option<String>,
    #[serde(rename = "type")]
    user_type: String,
    alias: Option<String>,
    /// RFC 3339.
    created_at: String,
}

impl From<RegistrationRecord> for RegisteredUser {
    fn from(r: RegistrationRecord) -> Self {
        Self {
            user_id: r.public_id,
            external_user_id: r.external_user_id,
            method: r.auth_method,
            identifier: r.identifier,
            user_type: r.user_type,
            alias: r.alias,
            created_at: super::rfc3339(r.created_at),
        }
    }
}

/// Register a user under the partner's own id; repeating the same registration is safe.
#[utoipa::path(post, path = "/partner/users", operation_id = "registerPartnerUser", tag = "Seed 000: partner users",
    security(("partnerApiKey" = [])),
    request_body(content = RegisterPartnerUser),
    responses(
        (status = 201, body = RegisteredUser, description = "Registered"),
        (status = 200, body = RegisteredUser, description = "Already registered with the same data: the same body again"),
        BadRequest, Unauthorized,
        (status = 409, body = super::error::Problem, content_type = "application/problem+json", description = "Registered before with different data; `errors` names the fields"),
        UnsupportedMediaType,
    ))]
pub async fn register(
    State(state): State<AppState>,
    ApiKeyPartner(partner): ApiKeyPartner,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<RegisteredUser>), ApiError> {
    let registration = parse_registration(&body)?;
    let registered =
        registrations::register_partner_user(&state.users, &state.registrations, partner.id, registration, now_ms())
            .await?;
    match registered {
        PartnerRegistered::Created(record) => Ok((StatusCode::CREATED, Json(record.into()))),
        PartnerRegistered::Replayed(record) => Ok((StatusCode::OK, Json(record.into()))),
        PartnerRegistered::Conflict(fields) => Err(ApiError::ConflictingFields {
            detail: "This externalUserId is already registered with different data.".into(),
            errors: fields
                .into_iter()
                .map(|field| FieldError { field: field.into(), message: "differs from the registered value".into() })
                .collect(),
        }),
    }
}

/// A user this partner registered, by its `externalUserId` (404 for any other partner's).
#[utoipa::path(get, path = "/partner/users/{externalUserId}", tag = "Seed 000: partner users",
    security(("partnerApiKey" = [])),
    params(("externalUserId" = String, Path, description = "The partner's own id for the user (URL-encoded)")),
    responses(
        (status = 200, body = RegisteredUser),
        Unauthorized, NotFound,
    ))]
pub async fn show(
    State(state): State<AppState>,
    ApiKeyPartner(partner): ApiKeyPartner,
    ApiPath(external_user_id): ApiPath<String>,
) -> Result<Json<RegisteredUser>, ApiError> {
    if let Some(record) = state.registrations.get(partner.id, &external_user_id) {
        return Ok(Json(record.into()));
    }
    let record = state.store.find_registration(partner.id, &external_user_id).await?;
    let record = record.ok_or_else(|| ApiError::NotFound("No user with this externalUserId.".into()))?;
    state.registrations.insert(partner.id, &record);
    Ok(Json(record.into()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(body: Value) -> Vec<(String, String)> {
        match parse_registration(&body) {
            Err(ApiError::Validation { errors, .. }) => errors.into_iter().map(|e| (e.field, e.message)).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn the_seeds_three_use_cases_parse() {
        let email = parse_registration(
            &json!({"externalUserId": "a", "method": "EMAIL", "identifier": "money@capa.fi", "type": "INDIVIDUAL"}),
        )
        .unwrap();
        assert_eq!(email.sign_in.identifier(), Some("money@capa.fi"));
        let phone = parse_registration(&json!({"externalUserId": "b", "method": "PHONE_NUMBER", "identifier": "+524401234567", "type": "BUSINESS"})).unwrap();
        assert_eq!(phone.sign_in.method(), AuthMethod::PhoneNumber);
        let none = parse_registration(&json!({"externalUserId": "c", "method": "NONE", "identifier": null, "type": "INDIVIDUAL", "alias": " Satoshi Nakamoto "})).unwrap();
        assert_eq!(none.alias.unwrap().as_str(), "Satoshi Nakamoto");
        let absent_method = parse_registration(&json!({"externalUserId": "d", "type": "INDIVIDUAL"})).unwrap();
        assert_eq!(absent_method.sign_in, SignIn::None);
    }

    #[test]
    fn every_invalid_field_is_named() {
        let found = problems(json!({"externalUserId": "", "method": "SMS", "type": "PERSON", "alias": 5, "extra": 1}));
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["extra", "externalUserId", "method", "type", "alias"]);
        let found = problems(
            json!({"externalUserId": "x", "method": "PHONE_NUMBER", "identifier": "5521206703", "type": "INDIVIDUAL"}),
        );
        assert_eq!(found[0].0, "identifier");
        assert!(found[0].1.contains("not a valid phone number for method PHONE_NUMBER"), "{found:?}");
        assert_eq!(
            problems(json!({"externalUserId": "x", "method": "EMAIL", "type": "INDIVIDUAL"}))[0].1,
            "is required for method EMAIL"
        );
        assert_eq!(
            problems(json!({"externalUserId": "x", "method": "NONE", "identifier": "a@b.co", "type": "INDIVIDUAL"}))[0]
                .0,
            "identifier"
        );
        assert_eq!(
            problems(json!({"method": "NONE", "type": "INDIVIDUAL"}))[0],
            ("externalUserId".into(), "is required".into())
        );
        assert_eq!(
            problems(json!({"externalUserId": 7, "type": "INDIVIDUAL"}))[0],
            ("externalUserId".into(), "must be a string".into())
        );
        assert_eq!(problems(json!({"externalUserId": "x"}))[0].0, "type");
    }

    #[test]
    fn replays_compare_the_way_people_spell() {
        use crate::core::registrations::differences;
        let stored = RegistrationRecord {
            id: 1,
            public_id: "usr:x".into(),
            external_user_id: "a".into(),
            auth_method: "EMAIL".into(),
            identifier: Some("Money@Capa.fi".into()),
            user_type: "INDIVIDUAL".into(),
            alias: None,
            created_at: 0,
        };
        let same = parse_registration(
            &json!({"externalUserId": "a", "method": "EMAIL", "identifier": "Money@capa.FI", "type": "INDIVIDUAL"}),
        )
        .unwrap();
        assert!(differences(&stored, &same).is_empty());
        let other = parse_registration(&json!({"externalUserId": "a", "method": "EMAIL", "identifier": "money@capa.fi", "type": "BUSINESS", "alias": "S"})).unwrap();
        assert_eq!(differences(&stored, &other), ["identifier", "type", "alias"]);
    }
}

/// Seed 000's request body, as `parse_registration` reads it. Described here for the OpenAPI
/// document; never built.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({
    "externalUserId": "91b95244-72ca-459e-88d2-281c3e2935c1", "method": "EMAIL",
    "identifier": "money@capa.fi", "type": "INDIVIDUAL", "alias": "Satoshi Nakamoto"
}))]
#[allow(dead_code)]
pub struct RegisterPartnerUser {
    /// The partner's own id for the user; repeating it with the same data is safe.
    #[schema(min_length = 1, max_length = 255)]
    external_user_id: String,
    /// How the user signs in (absent or null: `NONE`).
    method: Option<AuthMethod>,
    /// `EMAIL`: an e-mail address; `PHONE_NUMBER`: international format (`+524401234567`);
    /// `NONE`: null or absent.
    identifier: Option<String>,
    #[serde(rename = "type")]
    user_type: UserType,
    /// An optional alias or display name.
    #[schema(max_length = 100)]
    alias: Option<String>,
}
