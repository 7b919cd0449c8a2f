//! The HTTP error type and its one mapping to the wire: RFC 9457 problem+json, or RFC 6749
//! error bodies on the OAuth endpoints. Surfaces whose seed fixes another shape map there too.

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::trace::TraceContext;
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Which credential a 401 asks for, so the `WWW-Authenticate` challenge names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// `PartnerApiKey: <key>` header (seed 000).
    ApiKey,
    /// RFC 6750 bearer token; `invalid` adds `error="invalid_token"` (credentials were sent).
    Bearer { invalid: bool },
    /// Either of the above is accepted.
    Partner,
}

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The request field, in the wire's spelling (`$.a.b` for nested JSON paths).
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Validation { detail: String, errors: Vec<FieldError> },
    #[error("{0}")]
    MalformedBody(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("{detail}")]
    Unauthenticated { challenge: Challenge, detail: &'static str },
    #[error("{0}")]
    Forbidden(String),
    /// RFC 6750 §3.1: the token is valid but lacks `scope`.
    #[error("The access token lacks the `{scope}` scope this needs.")]
    InsufficientScope { scope: &'static str },
    /// An upstream provider (KYC, payments) failed; nothing was changed here.
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{detail}")]
    ConflictingFields { detail: String, errors: Vec<FieldError> },
    #[error("This Idempotency-Key was already used with a different request.")]
    IdempotencyKeyReused,
    #[error("A request with this Idempotency-Key is still being processed; retry shortly.")]
    IdempotencyKeyInUse,
    #[error("{detail}")]
    Unavailable { detail: &'static str, retry_after_secs: u64 },
    #[error("{detail}")]
    TooManyRequests { detail: &'static str, retry_after_secs: u64 },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    #[error("{0:?}")]
    OAuth(OAuthError),
}

/// RFC 6749 §5.2 error codes used by `/oauth/token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
}

/// RFC 6749 §5.2's error response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OAuthError {
    pub error: OAuthErrorCode,
    pub error_description: &'static str,
}

impl ApiError {
    /// A 400 that names one field (or header) and what is wrong with it.
    pub fn invalid_field(detail: impl Into<String>, field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation {
            detail: detail.into(),
            errors: vec![FieldError { field: field.into(), message: message.into() }],
        }
    }

    pub fn oauth(error: OAuthErrorCode, error_description: &'static str) -> Self {
        ApiError::OAuth(OAuthError { error, error_description })
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. } | ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::ConflictingFields { .. } | ApiError::IdempotencyKeyInUse => {
                StatusCode::CONFLICT
            }
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::OAuth(e) if e.error == OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ApiError::OAuth(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The stable `type` of the problem, documented in the README.
    fn problem_type(&self, flavor: Flavor) -> &'static str {
        if flavor == Flavor::AspNet {
            return aspnet_type(self.status());
        }
        match self {
            ApiError::Validation { .. } => "urn:onboard:problem:validation",
            ApiError::MalformedBody(_) => "urn:onboard:problem:malformed-body",
            ApiError::UnsupportedMediaType(_) => "urn:onboard:problem:unsupported-media-type",
            ApiError::PayloadTooLarge => "urn:onboard:problem:payload-too-large",
            ApiError::Unauthenticated { .. } => "urn:onboard:problem:unauthenticated",
            ApiError::Forbidden(_) => "urn:onboard:problem:forbidden",
            ApiError::InsufficientScope { .. } => "urn:onboard:problem:insufficient-scope",
            ApiError::BadGateway(_) => "urn:onboard:problem:provider-unavailable",
            ApiError::NotFound(_) => "urn:onboard:problem:not-found",
            ApiError::MethodNotAllowed => "urn:onboard:problem:method-not-allowed",
            ApiError::Conflict(_) | ApiError::ConflictingFields { .. } => "urn:onboard:problem:conflict",
            ApiError::IdempotencyKeyReused => "urn:onboard:problem:idempotency-key-reused",
            ApiError::IdempotencyKeyInUse => "urn:onboard:problem:idempotency-key-in-use",
            ApiError::Unavailable { .. } => "urn:onboard:problem:unavailable",
            ApiError::TooManyRequests { .. } => "urn:onboard:problem:rate-limited",
            ApiError::Internal(_) | ApiError::OAuth(_) => "urn:onboard:problem:internal",
        }
    }
}

/// The problem responses routes share, each declared once for the API reference
/// (`responses(…, BadRequest, Unauthorized)` in a route's `utoipa::path`).
pub mod responses {
    use super::Problem;

    macro_rules! problem_responses {
        ($($name:ident $status:literal $description:literal;)*) => {$(
            #[derive(utoipa::IntoResponses)]
            #[response(status = $status, description = $description, content_type = "application/problem+json")]
            pub struct $name(#[allow(dead_code)] Problem);
        )*};
    }

    problem_responses! {
        BadRequest 400 "Invalid fields: `errors` names each";
        Unauthorized 401 "Missing or invalid credentials";
        Forbidden 403 "The credential does not allow this (another role or scope)";
        NotFound 404 "Not found (or not this partner's)";
        PayloadTooLarge 413 "The body is larger than `http.max_body_bytes`";
        UnsupportedMediaType 415 "The body is not `application/json`";
        Unavailable 503 "Not ready to answer this yet; see `Retry-After`";
    }
}

/// An RFC 9457 problem document with Onboard's extension members.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// `00-<trace id>-<span id>-00`; quote it when reporting a problem.
    pub trace_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Which family of `type` URIs a surface uses: Onboard's own, or the RFC 7231 section links that
/// ASP.NET Core puts in its ProblemDetails (seed 001 was written against an ASP.NET service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Onboard,
    AspNet,
}

fn aspnet_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "https://tools.ietf.org/html/rfc7231#section-6.5.1",
        401 => "https://tools.ietf.org/html/rfc7235#section-3.1",
        403 => "https://tools.ietf.org/html/rfc7231#section-6.5.3",
        404 => "https://tools.ietf.org/html/rfc7231#section-6.5.4",
        405 => "https://tools.ietf.org/html/rfc7231#section-6.5.5",
        409 => "https://tools.ietf.org/html/rfc7231#section-6.5.8",
        413 => "https://tools.ietf.org/html/rfc7231#section-6.5.11",
        415 => "https://tools.ietf.org/html/rfc7231#section-6.5.13",
        422 => "https://tools.ietf.org/html/rfc4918#section-11.2",
        429 => "https://tools.ietf.org/html/rfc6585#section-4",
        503 => "https://tools.ietf.org/html/rfc7231#section-6.6.4",
        _ => "https://tools.ietf.org/html/rfc7231#section-6.6.1",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.render(Flavor::Onboard)
    }
}

impl ApiError {
    /// The one mapping from errors to the wire, in the given flavour.
    pub fn render(self, flavor: Flavor) -> Response {
        let status = self.status();
        let trace = TraceContext::current();
        if let ApiError::OAuth(body) = &self {
            let mut response = (status, Json(body)).into_response();
            no_store(&mut response);
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Basic realm="onboard""#));
            }
            return response;
        }
        let detail = match &self {
            ApiError::Internal(err) => {
                // The whole cause chain goes to the log, never to the client.
                tracing::error!(trace_id = %trace.trace_id_hex(), error = ?err, "unexpected error");
                "An unexpected error occurred; quote the traceId when reporting it.".to_owned()
            }
            other => other.to_string(),
        };
        let errors = match self {
            ApiError::Validation { ref errors, .. } | ApiError::ConflictingFields { ref errors, .. } => errors.clone(),
            _ => Vec::new(),
        };
        let problem = Problem {
            problem_type: self.problem_type(flavor).to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            trace_id: trace.trace_id_field(),
            errors,
        };
        let mut response = problem_response(status, &problem);
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthenticated { challenge, .. } => {
                let value = match challenge {
                    Challenge::ApiKey => r#"PartnerApiKey realm="onboard""#,
                    Challenge::Bearer { invalid: false } => r#"Bearer realm="onboard""#,
                    Challenge::Bearer { invalid: true } => r#"Bearer realm="onboard", error="invalid_token""#,
                    Challenge::Partner => r#"Bearer realm="onboard", PartnerApiKey realm="onboard""#,
                };
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(value));
            }
            ApiError::InsufficientScope { scope } => {
                let value = format!(r#"Bearer realm="onboard", error="insufficient_scope", scope="{scope}""#);
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            ApiError::Unavailable { retry_after_secs, .. } | ApiError::TooManyRequests { retry_after_secs, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::IdempotencyKeyInUse => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// Serialises any body as `application/problem+json` (also used by surfaces with their own shape).
pub fn problem_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// RFC 6749 §5.1: token responses and their errors must not be cached.
pub fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = ?err, "database unavailable");
                ApiError::Unavailable {
                    detail: "The service is temporarily unavailable; retry shortly.",
                    retry_after_secs: 1,
                }
            }
            StoreError::Overloaded => {
                ApiError::Unavailable { detail: "The service is busy; retry shortly.", retry_after_secs: 1 }
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::UnsupportedMediaType("Expected a request body with `Content-Type: application/json`.".into())
            }
            _ => match rejection {
                JsonRejection::JsonDataError(e) => ApiError::MalformedBody(format!(
                    "The JSON body does not match the expected shape: {}",
                    e.body_text().trim_start_matches("Failed to deserialize the JSON body into the target type: ")
                )),
                JsonRejection::JsonSyntaxError(_) => {
                    ApiError::MalformedBody("The request body is not valid JSON.".into())
                }
                other => ApiError::MalformedBody(other.body_text()),
            },
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            _ => ApiError::oauth(
                OAuthErrorCode::InvalidRequest,
                "the body must be application/x-www-form-urlencoded parameters",
            ),
        }
    }
}
