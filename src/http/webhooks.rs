//! A partner's webhook endpoints and events (API key or bearer token): create, list, change,
//! delete, rotate the secret, send a test; list events with their delivery attempts, replay one,
//! replay every failed delivery since a time.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::AppState;
use super::error::ApiError;
use super::error::responses::UnsupportedMediaType;
use super::extract::{AnyPartner, ApiJson, ApiPath, ApiQuery};
use super::fields::{Problems, object};
use crate::core::webhooks::{self as usecase, Endpoint, EndpointPatch, NewEndpointRequest, WebhookError};
use crate::domain::now_ms;
use crate::domain::webhook::EventType;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(events))
        .routes(routes!(replay))
        .routes(routes!(replay_failed))
        .routes(routes!(update, delete))
        .routes(routes!(rotate))
        .routes(routes!(test))
}

const INVALID: &str = "The request has invalid fields.";

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::Url(e) => ApiError::invalid_field(INVALID, "url", e.to_string()),
            WebhookError::Filter(e) => ApiError::invalid_field(INVALID, "events", e.to_string()),
            WebhookError::Invalid(message) => ApiError::invalid_field(INVALID, "description", message),
            WebhookError::NoEndpoint => ApiError::NotFound("This partner has no such webhook endpoint.".into()),
            WebhookError::NoEvent => ApiError::NotFound("This partner has no such event.".into()),
            WebhookError::Sealed(e) => ApiError::Internal(e.into()),
            WebhookError::Store(e) => e.into(),
        }
    }
}

/// An endpoint with its signing secret: only in the answers that create one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    endpoint: Endpoint,
    /// `whsec_…`: shown once; verify `webhook-signature` with it.
    secret: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    data: Vec<Endpoint>,
}

/// The `events` member: absent is every type (`None`), null or `["*"]` too (`Some(None)`).
fn events_field(problems: &mut Problems, body: &Map<String, Value>) -> Option<Option<Vec<String>>> {
    match body.get("events") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Some(Some(items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()))
        }
        Some(_) => {
            problems.add("events", "must be an array of event type names");
            None
        }
    }
}

fn checked(problems: Problems) -> Result<(), ApiError> {
    if problems.0.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation { detail: INVALID.into(), errors: problems.0 })
    }
}

/// Adds an endpoint; the answer carries its secret, once.
#[utoipa::path(post, path = "/partner/webhooks", tag = "Partner webhooks",
    request_body(content = NewEndpoint),
    responses(
        (status = 201, body = EndpointWithSecret),
        (status = 400, description = "Invalid fields (a URL that is not https for a live partner, or points at an address webhooks may not reach)", body = super::error::Problem), UnsupportedMediaType),
    security(("bearer" = []), ("partnerApiKey" = [])))]
pub async fn create(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    let body = object(body)?;
    let mut problems = Problems::default();
    problems.unknown_fields(&body, &["url", "events", "description"]);
    let url = problems.string(&body, "url", true);
    let description = problems.optional_string(&body, "description").flatten();
    let events = events_field(&mut problems, &body).flatten();
    checked(problems)?;
    let request = NewEndpointRequest { url: url.unwrap_or_default(), events: events.as_deref(), description };
    let allow_loopback = state.webhooks.settings().allow_loopback;
    let created =
        usecase::create_endpoint(&state.store, state.kyc.kek(), &partner, request, allow_loopback, now_ms()).await?;
    let answer = EndpointWithSecret { endpoint: created.endpoint, secret: created.secret.expose().to_owned() };
    Ok((StatusCode::CREATED, Json(answer)))
}

#[utoipa::path(get, path = "/partner/webhooks", tag = "Partner webhooks",
    responses((status = 200, body = EndpointList)),
    security(("bearer" = []), ("partnerApiKey" = [])))]
pub async fn list(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
) -> Result<Json<EndpointList>, ApiError> {
    let now = now_ms();
    let records = state.store.webhook_endpoints(partner.id.get()).await?;
    Ok(Json(EndpointList { data: records.iter().map(|r| Endpoint::of(r, now)).collect() }))
}

/// Changes an endpoint: `url`, `events`, `description`, `enabled` (re-enabling clears why it
/// was disabled).
#[utoipa::path(patch, path = "/partner/webhooks/{endpointId}", tag = "Partner webhooks",
    params(("endpointId" = String, Path, description = "ep_…")),
    request_body(content = EndpointChange),
    responses((status = 200, body = Endpoint), (status = 400, description = "Invalid fields", body = super::error::Problem),
        (status = 404, description = "No such endpoint", body = super::error::Problem), UnsupportedMediaType),
    security(("bearer" = []), ("partnerApiKey" = [])))]
pub async fn update(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Endpoint>, ApiError> {
    let body = object(body)?;
    let mut problems = Problems::default();
    problems.unknown_fields(&body, &["url", "events", "description", "enabled"]);
    let url = match body.get("url") {
        None => None,
        Some(_) => problems.string(&body, "url", true).map(str::to_owned),
    };
    let description = match body.get("description") {
        None => None,
        Some(_) => problems.optional_string(&body, "description").map(|d| d.map(str::to_owned)),
    };
    let enabled = match body.get("enabled") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            problems.add("enabled", "must be true or false");
            None
        }
    };
    let events = events_field(&mut problems, &body);
    checked(problems)?;
    let patch = EndpointPatch { url, events, description, enabled };
    let allow_loopback = state.webhooks.settings().allow_loopback;
    Ok(Json(usecase::update_endpoint(&state.store, &partner, &id, patch, allow_loopback, now_ms()).await?))
}

#[utoipa::path(delete, path = "/partner/webhooks/{endpointId}", tag = "Partner webhooks",
    params(("endpointId" = String, Path, description = "ep_…")),
    responses((status = 204, description = "Deleted; its queued deliveries stop"),
        (status = 404, description = "No such endpoint", body = super::error::Problem)),
    security(("bearer" = []), ("partnerApiKey" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    usecase::delete_endpoint(&state.store, &partner, &id, now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new secret; the previous one keeps signing beside it for 24 hours.
#[utoipa::path(post, path = "/partner/webhooks/{endpointId}/rotate-secret", tag = "Partner webhooks",
    params(("endpointId" = String, Path, description = "ep_…")),
    responses((status = 200, body = EndpointWithSecret), (status = 404, description = "No such endpoint", body = super::error::Problem)),
    security(("bearer" = []), ("partnerApiKey" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let (endpoint, secret) = usecase::rotate_secret(&state.store, state.kyc.kek(), &partner, &id, now_ms()).await?;
    Ok(Json(EndpointWithSecret { endpoint, secret: secret.expose().to_owned() }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    /// The event sent (a test) or replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    /// Deliveries queued.
    queued: u64,
}

/// Sends a `webhook.test` event to this endpoint (also when disabled, to check a fix).
#[utoipa::path(post, path = "/partner/webhooks/{endpointId}/test", tag = "Partner webhooks",
    params(("endpointId" = String, Path, description = "ep_…")),
    responses((status = 202, body = Queued), (status = 404, description = "No such endpoint", body = super::error::Problem)),
    security(("bearer" = []), ("partnerApiKey" = [])))]
pub async fn test(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let event = usecase::send_test(&state.store, &partner, &id, now_ms()).await?;
    state.jobs.wake_kind(crate::store::webhooks::DELIVER_JOB);
    Ok((StatusCode::ACCEPTED, Json(Queued { event_id: Some(event), queued: 1 })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

/// One delivery attempt of an event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    endpoint_id: String,
    attempt: i64,
    at: String,
    /// `delivered`, `failed`, `gone` (410: the endpoint was disabled) or `refused` (an address
    /// webhooks may not reach).
    result: String,
    status: Option<i64>,
    latency_ms: i64,
    /// The first kilobyte of the receiver's answer.
    response: Option<String>,
    error: Option<String>,
    next_attempt_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebhookEvent)]
pub struct EventView {
    /// The `webhook-id` of its deliveries.
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    timestamp: String,
    #[schema(value_type = Object)]
    data: Value,
    attempts: Vec<AttemptView>,
}

impl EventView {
    /// The event with its attempts (`attempts` may hold other events' too).
    fn new(r: crate::store::webhooks::EventRecord, attempts: &[crate::store::webhooks::AttemptRecord]) -> Self {
        let attempts = attempts
            .iter()
            .filter(|a| a.event_id == r.id)
            .map(|a| AttemptView {
                endpoint_id: a.endpoint_public_id.clone(),
                attempt: a.attempt,
                at: super::rfc3339(a.at),
                result: a.result.clone(),
                status: a.status,
                latency_ms: a.latency_ms,
                response: a.response.clone(),
                error: a.error.clone(),
                next_attempt_at: a.next_at.map(super::rfc3339),
            })
            .collect();
        Self {
            attempts,
            id: r.public_id,
            event_type: r.event_type,
            timestamp: super::rfc3339(r.created_at),
            data: serde_json::from_str(&r.data).unwrap_or(Value::Null),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    data: Vec<EventView>,
    /// Pass the last event's id as `after` for the next page.
    has_more: bool,
}

/// The partner's events, oldest first, with every delivery attempt.
#[utoipa::path(get, path = "/partner/webhooks/events", tag = "Partner webhooks",
    params(("type" = Option<String>, Query, description = "Only this event type"),
        ("after" = Option<String>, Query, description = "The id of the last event of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 100 (default 50)")),
    responses((status = 200, body = EventPage), (status = 400, description = "A bad query", body = super::error::Problem)),
    security(("bearer" = []), ("partnerApiKey" = [])))]
pub async fn events(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    if let Some(name) = query.event_type.as_deref()
        && EventType::parse(name).is_none()
    {
        let known = EventType::NAMES;
        return Err(ApiError::invalid_field("The query is invalid.", "type", format!("must be one of {known}")));
    }
    let limit = i64::from(query.limit.unwrap_or(50));
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_field("The query is invalid.", "limit", "must be between 1 and 100"));
    }
    let partner_id = partner.id.get();
    let mut records =
        state.store.webhook_events(partner_id, query.event_type.as_deref(), query.after.as_deref(), limit + 1).await?;
    let has_more = records.len() as i64 > limit;
    records.truncate(limit as usize);
    let (first, last) = (records.first().map_or(0, |r| r.id), records.last().map_or(-1, |r| r.id));
    let attempts = state.store.webhook_attempts(partner_id, first, last).await?;
    let data = records.into_iter().map(|r| EventView::new(r, &attempts)).collect();
    Ok(Json(EventPage { data, has_more }))
}

/// Delivers an event again (same `webhook-id`): to `endpointId`, or to every enabled endpoint
/// subscribed to its type.
#[utoipa::path(post, path = "/partner/webhooks/events/{eventId}/replay", tag = "Partner webhooks",
    params(("eventId" = String, Path, description = "msg_…")),
    request_body(content = Option<ReplayTarget>, description = "Optional"),
    responses((status = 202, body = Queued), (status = 404, description = "No such event or endpoint", body = super::error::Problem)),
    security(("bearer" = []), ("partnerApiKey" = [])))]
pub async fn replay(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiPath(event): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    // The body is optional: empty replays to every subscribed endpoint.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        let value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::MalformedBody(format!("The body is not valid JSON: {e}.")))?;
        object(value)?
    };
    let mut problems = Problems::default();
    problems.unknown_fields(&body, &["endpointId"]);
    let endpoint = problems.optional_string(&body, "endpointId").flatten();
    checked(problems)?;
    let queued = usecase::replay_event(&state.store, &partner, &event, endpoint, now_ms()).await?;
    state.jobs.wake_kind(crate::store::webhooks::DELIVER_JOB);
    Ok((StatusCode::ACCEPTED, Json(Queued { event_id: Some(event), queued: queued as u64 })))
}

/// Queues again every delivery that was given up on, of events since `since` (RFC 3339).
#[utoipa::path(post, path = "/partner/webhooks/replay-failed", tag = "Partner webhooks",
    request_body(content = ReplayFailed),
    responses((status = 202, body = Queued), (status = 400, description = "`since` missing or not RFC 3339", body = super::error::Problem), UnsupportedMediaType),
    security(("bearer" = []), ("partnerApiKey" = [])))]
pub async fn replay_failed(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let body = object(body)?;
    let mut problems = Problems::default();
    problems.unknown_fields(&body, &["since"]);
    let since = problems.parse(&body, "since", true, |raw| {
        time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|_| "must be an RFC 3339 date-time")
    });
    checked(problems)?;
    let queued = usecase::replay_failed(&state.store, &partner, since.unwrap_or_default(), now_ms()).await?;
    state.jobs.wake_kind(crate::store::webhooks::DELIVER_JOB);
    Ok((StatusCode::ACCEPTED, Json(Queued { event_id: None, queued })))
}

/// `POST /partner/webhooks`. Described for the OpenAPI document; never built.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://partner.example/onboard-events", "events": ["cip.status_changed", "user.created"]}))]
#[allow(dead_code)]
pub struct NewEndpoint {
    /// https for live partners; http and loopback for sandbox partners.
    #[schema(format = "uri")]
    url: String,
    /// Event type names; absent, null or `["*"]` for all.
    events: Option<Vec<String>>,
    #[schema(max_length = 500)]
    description: Option<String>,
}

/// `PATCH /partner/webhooks/{endpointId}`: any of the members. Described for the OpenAPI
/// document; never built.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": true}))]
#[allow(dead_code)]
pub struct EndpointChange {
    #[schema(format = "uri")]
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    /// Re-enabling clears why the endpoint was disabled.
    enabled: Option<bool>,
}

/// `POST …/events/{eventId}/replay`: the body is optional. Described for the OpenAPI document.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ReplayTarget {
    /// `ep_…`: this endpoint only; absent: every enabled endpoint subscribed to the type.
    endpoint_id: Option<String>,
}

/// `POST /partner/webhooks/replay-failed`. Described for the OpenAPI document.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"since": "2026-12-01T00:00:00Z"}))]
#[allow(dead_code)]
pub struct ReplayFailed {
    #[schema(format = DateTime)]
    since: String,
}
