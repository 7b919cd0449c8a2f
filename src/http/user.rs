//! Seed 001: `POST /User` creates a minimal user record; `GET /User/{id}` reads it back.
//! Errors are shaped as the ASP.NET service the seed documents (see `aspnet.rs`).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::AppState;
use super::aspnet::{self, JsonBody, ValidationErrors};
use super::error::{ApiError, Flavor};
use super::extract::{ApiPath, BearerPartner};
use super::idempotency::{IdempotencyClaim, mark_completed, stored_into_response};
use crate::core::registrations;
use crate::domain::{Email, InvalidEmail, PartnerId, PublicUserId, UserId, now_ms};
use crate::store::{Respond, StoredResponse, UserRecord};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_user)).routes(routes!(get_user))
}

/// This surface's errors, mapped to its wire in one place.
pub enum UserError {
    Api(ApiError),
    Validation(ValidationErrors),
}

impl From<ApiError> for UserError {
    fn from(err: ApiError) -> Self {
        UserError::Api(err)
    }
}

impl From<crate::store::StoreError> for UserError {
    fn from(err: crate::store::StoreError) -> Self {
        UserError::Api(err.into())
    }
}

impl IntoResponse for UserError {
    fn into_response(self) -> Response {
        match self {
            UserError::Api(err) => err.render(Flavor::AspNet),
            UserError::Validation(errors) => errors.into_response(),
        }
    }
}

/// The request once it has passed validation.
pub(super) struct CreateUser {
    merchant_id: PartnerId,
    email: Option<Email>,
    additional_data: Option<String>,
}

const REQUEST_TYPE: &str = "Onboard.Contracts.CreateUserRequest";

/// Checks the body the way the ASP.NET model binder and the seed's validation rules do, reporting
/// every problem at once.
pub(super) fn parse_create_user(raw: &[u8]) -> Result<CreateUser, ValidationErrors> {
    let body = JsonBody::parse(raw)?;
    let mut errors = ValidationErrors::default();
    let Value::Object(fields) = &body.value else {
        return Err(ValidationErrors::single("$", body.conversion_error("$", REQUEST_TYPE)));
    };

    // Bound as ASP.NET's web defaults bind: names case-insensitively, numbers also from strings.
    let merchant = body.property(fields, "$", "merchantId");
    let email = body.property(fields, "$", "email");
    let additional = body.property(fields, "$", "additionalData");
    // Earlier spellings are converted too (and overwritten): one of the wrong type still fails.
    let mut earlier = |name: &str, converts: fn(&Value) -> bool, dotnet_type: &str| {
        let mut all = body.properties(fields, "$", name);
        all.pop();
        for (path, _) in all.into_iter().filter(|(_, value)| !converts(value)) {
            errors.add(path.as_str(), body.conversion_error(&path, dotnet_type));
        }
    };
    earlier("merchantId", |v| aspnet::int32(v).is_some(), "System.Int32");
    earlier("email", |v| v.is_string() || v.is_null(), "System.String");

    let missing: Vec<&str> = [("merchantId", &merchant), ("email", &email)]
        .into_iter()
        .filter(|(_, found)| found.is_none())
        .map(|(name, _)| name)
        .collect();
    if !missing.is_empty() {
        let list = missing.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
        errors.add(
            "$",
            format!(
                "JSON deserialization for type '{REQUEST_TYPE}' was missing required properties including: {list}."
            ),
        );
    }

    // An Int32 (anything else is a conversion error, as in .NET), then the seed's range rule.
    let merchant_id = match merchant {
        None => None,
        Some((path, value)) => match aspnet::int32(value) {
            None => {
                errors.add(path.as_str(), body.conversion_error(&path, "System.Int32"));
                None
            }
            Some(n) => {
                let id = PartnerId::new(i64::from(n)).ok();
                if id.is_none() {
                    errors.add("MerchantId", "The field MerchantId must be between 1 and 2147483647.");
                }
                id
            }
        },
    };

    let email = match email {
        None | Some((_, Value::Null)) => None,
        Some((_, Value::String(s))) => match Email::parse(s) {
            Ok(email) => Some(email),
            Err(InvalidEmail::Empty) => {
                errors.add("Email", "The Email field is required.");
                errors.add("Email", "Email address is required");
                None
            }
            Err(InvalidEmail::Malformed) => {
                errors.add("Email", "Invalid email address");
                None
            }
        },
        Some((path, _)) => {
            errors.add(path.as_str(), body.conversion_error(&path, "System.String"));
            None
        }
    };

    let additional_data = match additional {
        None | Some((_, Value::Null)) => None,
        Some((path, Value::Object(inner))) => {
            let mut ok = true;
            if let Some((at, kind)) = body.property(inner, &path, "type")
                && !kind.is_string()
                && !kind.is_null()
            {
                errors.add(at.as_str(), body.conversion_error(&at, "System.String"));
                ok = false;
            }
            if let Some((at, data)) = body.property(inner, &path, "data")
                && !data.is_object()
                && !data.is_null()
            {
                let dictionary = "System.Collections.Generic.Dictionary`2[System.String,System.Object]";
                errors.add(at.as_str(), body.conversion_error(&at, dictionary));
                ok = false;
            }
            ok.then(|| body.raw_text(&path).map(str::to_owned)).flatten()
        }
        Some((path, _)) => {
            errors.add(path.as_str(), body.conversion_error(&path, "Onboard.Contracts.AdditionalData"));
            None
        }
    };

    match merchant_id {
        Some(merchant_id) if errors.is_empty() => Ok(CreateUser { merchant_id, email, additional_data }),
        _ => Err(errors),
    }
}

/// ASP.NET accepts `application/json`, `text/json` and `application/*+json`.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json"
        || essence == "text/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The 201 answer, built once and used both live and for Idempotency-Key replays.
fn created(record: &UserRecord) -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), "application/json; charset=utf-8".into()),
            ("location".into(), format!("/User/{}", record.id)),
        ],
        body: format!(r#"{{"id":{}}}"#, record.id).into_bytes(),
    }
}

/// Create a minimal user record (seed 001). Each call creates a new user unless it repeats an
/// `Idempotency-Key`.
#[utoipa::path(post, path = "/User", operation_id = "createUser", tag = "Seed 001: users",
    security(("bearer" = [])),
    request_body(content = CreateUserRequest, content_type = "application/json"),
    responses(
        (status = 201, body = Created, content_type = "application/json", description = "Created",
            headers(("Location" = String, description = "`/User/{id}`"))),
        (status = 400, body = aspnet::ValidationProblemDetails, content_type = "application/problem+json", description = "Validation errors, keyed by property",
            examples(
                ("Invalid email format" = (value = json!({"errors": {"Email": ["Invalid email address"]}, "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1", "title": "One or more validation errors occurred.", "status": 400, "traceId": "00-515d7188d11bc727bd3a370ee0cd1616-2be049b580ab15d0-00"}))),
                ("Empty string as email" = (value = json!({"errors": {"Email": ["The Email field is required.", "Email address is required"]}, "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1", "title": "One or more validation errors occurred.", "status": 400, "traceId": "00-fcbcb78b23ec3326237f26ce00531c90-4b3cd8492df8c02d-00"}))),
            )),
        (status = 401, body = super::error::Problem, content_type = "application/problem+json", description = "Missing, invalid or expired token"),
        (status = 403, body = super::error::Problem, content_type = "application/problem+json", description = "`merchantId` is not the calling partner"),
        (status = 409, body = super::error::Problem, content_type = "application/problem+json", description = "The same Idempotency-Key is still in flight"),
        (status = 413, body = super::error::Problem, content_type = "application/problem+json", description = "The body is larger than `http.max_body_bytes`"),
        (status = 415, body = super::error::Problem, content_type = "application/problem+json", description = "The body is not JSON (`application/json`, `text/json` or `application/*+json`)"),
        (status = 422, body = super::error::Problem, content_type = "application/problem+json", description = "The Idempotency-Key was used with another body"),
    ))]
pub async fn create_user(
    State(state): State<AppState>,
    partner: Result<BearerPartner, ApiError>,
    claim: Option<Extension<IdempotencyClaim>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, UserError> {
    let BearerPartner(partner) = partner?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::MalformedBody("The request body could not be read.".into()),
    })?;
    if !is_json(&headers) {
        return Err(ApiError::UnsupportedMediaType("Send the body as `Content-Type: application/json`.".into()).into());
    }
    let request = parse_create_user(&body).map_err(UserError::Validation)?;
    if request.merchant_id != partner.id {
        return Err(ApiError::Forbidden("merchantId is not the merchant these credentials belong to.".into()).into());
    }
    let completing = claim.is_some();
    let complete = claim.map(|Extension(claim)| (claim.scope, created as Respond));
    let masked_email = request.email.as_ref().map(ToString::to_string);
    let record = registrations::create_user(
        &state.users,
        partner.id,
        request.email,
        request.additional_data,
        complete,
        now_ms(),
    )
    .await?;
    tracing::debug!(user_id = %record.id, email = ?masked_email, "user created");
    let mut response = stored_into_response(created(&record));
    if completing {
        mark_completed(&mut response);
    }
    Ok(response)
}

/// A seed-001 user record.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    #[schema(value_type = i32)]
    id: UserId,
    /// `usr:<uuid>`.
    #[schema(value_type = String)]
    user_id: PublicUserId,
    merchant_id: i64,
    email: Option<String>,
    #[schema(value_type = Option<AdditionalData>)]
    additional_data: Option<Box<RawValue>>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    created_at: String,
}

/// Read back a user created by the calling partner (404 for anyone else's).
#[utoipa::path(get, path = "/User/{id}", tag = "Seed 001: users",
    security(("bearer" = [])),
    params(("id" = i32, Path, description = "The `id` returned by `POST /User`")),
    responses(
        (status = 200, body = UserView, description = "The stored record"),
        (status = 401, body = super::error::Problem, content_type = "application/problem+json", description = "Missing, invalid or expired token"),
        (status = 404, body = super::error::Problem, content_type = "application/problem+json", description = "No such user of this partner"),
    ))]
pub async fn get_user(
    State(state): State<AppState>,
    partner: Result<BearerPartner, ApiError>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UserView>, UserError> {
    let BearerPartner(partner) = partner?;
    let not_found = || UserError::Api(ApiError::NotFound("No such user.".into()));
    let id = id.parse::<i64>().ok().and_then(|v| UserId::new(v).ok()).ok_or_else(not_found)?;
    let record = state.store.find_user(partner.id, id).await?.ok_or_else(not_found)?;
    Ok(Json(UserView {
        id: record.id,
        user_id: record.public_id,
        merchant_id: record.partner.get(),
        email: record.email,
        additional_data: record.additional_data.and_then(|text| RawValue::from_string(text).ok()),
        created_at: super::rfc3339(record.created_at),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(body: &str) -> String {
        serde_json::to_string(&parse_create_user(body.as_bytes()).err().expect("invalid")).unwrap()
    }

    #[test]
    fn seed_examples() {
        assert_eq!(errors_of(r#"{"merchantId": 9101, "email": "bad"}"#), r#"{"Email":["Invalid email address"]}"#);
        assert_eq!(
            errors_of(r#"{"merchantId": 9101, "email": ""}"#),
            r#"{"Email":["The Email field is required.","Email address is required"]}"#
        );
        let ok = parse_create_user(br#"{"merchantId": 9101, "email": "client.name@example.org"}"#).unwrap();
        assert_eq!(ok.merchant_id.get(), 9101);
        assert!(parse_create_user(br#"{"merchantId": 9101, "email": null}"#).unwrap().email.is_none());
    }

    #[test]
    fn every_problem_is_reported() {
        let text = errors_of(r#"{"merchantId": "abc", "email": "x@", "additionalData": []}"#);
        assert!(text.contains(r#""$.merchantId":["The JSON value could not be converted to System.Int32. Path: $.merchantId | LineNumber: 0 | BytePositionInLine: 20."]"#), "{text}");
        assert!(text.contains(r#""Email":["Invalid email address"]"#), "{text}");
        assert!(text.contains(r#""$.additionalData":["#), "{text}");
        let missing = errors_of("{}");
        assert!(missing.contains("missing required properties including: 'merchantId', 'email'."), "{missing}");
        assert!(errors_of(r#"{"merchantId": 0, "email": null}"#).contains("MerchantId"));
        assert!(errors_of(r#"{"merchantId": 2147483648, "email": null}"#).contains("$.merchantId"));
        assert!(errors_of(r#"{"merchantId": 1.5, "email": null}"#).contains("$.merchantId"));
        assert!(errors_of(r#"{"merchantId": 1, "email": 5}"#).contains("$.email"));
        assert!(
            errors_of(r#"{"merchantId": 1, "email": null, "additionalData": {"type": 1, "data": []}}"#)
                .contains("$.additionalData.data")
        );
        assert!(errors_of("[1]").contains(r#""$":["#));
    }

    #[test]
    fn an_earlier_spelling_of_the_wrong_type_fails_as_in_dotnet() {
        let errors = errors_of(r#"{"merchantId": "x", "MerchantId": 5, "email": null}"#);
        assert!(
            errors.contains(r#""$.merchantId":["The JSON value could not be converted to System.Int32."#),
            "{errors}"
        );
        let errors = errors_of(r#"{"EMAIL": 1, "merchantId": 5, "email": null}"#);
        assert!(errors.contains(r#""$.EMAIL":["#), "{errors}");
        assert!(parse_create_user(br#"{"merchantId": "4", "MerchantId": 5, "email": null}"#).is_ok());
    }

    #[test]
    fn additional_data_is_kept_verbatim() {
        let raw = br#"{"merchantId": 1, "email": null, "additionalData": {"type":"import",  "data": {"requestId": "r-1", "n": 1.50}}}"#;
        let parsed = parse_create_user(raw).unwrap();
        assert_eq!(
            parsed.additional_data.as_deref(),
            Some(r#"{"type":"import",  "data": {"requestId": "r-1", "n": 1.50}}"#)
        );
    }
}

/// Seed 001's `CreateUserRequest`, as `parse_create_user` binds it (names case-insensitively,
/// as ASP.NET does). Described here for the OpenAPI document; never built.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"merchantId": 9101, "email": "client.name@example.org"}))]
#[allow(dead_code)]
pub struct CreateUserRequest {
    /// Identifier of the merchant initiating the request: the calling partner's id.
    #[schema(minimum = 1, maximum = 2147483647)]
    merchant_id: i32,
    /// Customer e-mail address: `null` at creation time, or a valid address; never `""`.
    #[schema(required = true, format = Email)]
    email: Option<String>,
    additional_data: Option<AdditionalData>,
}

/// Extensible container for metadata.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AdditionalData {
    /// Free label, e.g. `onboarding`, `migration`, `import`.
    #[schema(rename = "type")]
    kind: Option<String>,
    /// Custom key/value metadata.
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

/// `201 Created`.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"id": 2072}))]
#[allow(dead_code)]
pub struct Created {
    /// Unique identifier assigned to the user (int32).
    id: i32,
}
