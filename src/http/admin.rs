//! Staff routes under `/admin/` (DESIGN.md §7): authenticated by a staff token, never by a
//! partner credential; every action is written to the audit log with the token's name.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::Deserialize;

use super::AppState;
use super::error::responses::{BadRequest, Forbidden, Unauthorized, Unavailable, UnsupportedMediaType};
use super::error::{ApiError, Challenge};
use super::extract::{ApiJson, ApiPath, ApiQuery, required_bearer};
use super::fields::Problems;
use crate::auth::staff::{Staff, StaffRole};
use crate::core::{self, onboarding::CaseDecision, onboarding::MoveError};
use crate::domain::now_ms;
use crate::sanctions::{self, EntityKind, ListSelection, ListSource, SanctionsError, Screening};
use crate::store::{ComplianceCase, JobRow, ListVersion};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(screen))
        .routes(routes!(current_list))
        .routes(routes!(current_lists))
        .routes(routes!(jobs))
        .routes(routes!(retry_job))
        .routes(routes!(compliance_cases))
        .routes(routes!(clear_case))
        .routes(routes!(block_case))
        .routes(routes!(user_timeline))
}

const MISSING_STAFF: &str = "Send a staff token from `onboard admin token create` as `Authorization: Bearer <token>`.";
const INVALID_STAFF: &str = "The staff token is invalid or revoked.";

/// A staff member authenticated by an admin token.
pub struct StaffAuth(pub Staff);

impl FromRequestParts<AppState> for StaffAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let invalid =
            || ApiError::Unauthenticated { challenge: Challenge::Bearer { invalid: true }, detail: INVALID_STAFF };
        let token = required_bearer(&parts.headers, MISSING_STAFF, INVALID_STAFF)?;
        let record = core::staff::authenticate(&state.store, token).await?.ok_or_else(invalid)?;
        Ok(StaffAuth(Staff { name: record.name, role: record.role }))
    }
}

impl StaffAuth {
    pub(super) fn require(&self, role: StaffRole) -> Result<&Staff, ApiError> {
        if self.0.has(role) { Ok(&self.0) } else { Err(ApiError::Forbidden(format!("This needs the {role} role."))) }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScreenRequest {
    /// Full name in any order, or the parts below.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    middle_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    second_last_name: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    date_of_birth: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[serde(default)]
    country: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<EntityKind>,
    /// The lists to screen against (default: every list loaded).
    #[serde(default)]
    lists: Option<Vec<ListSource>>,
}

impl ScreenRequest {
    fn parse(self) -> Result<(sanctions::Query, Option<ListSelection>), ApiError> {
        let mut p = Problems::default();
        let parts: Vec<String> = [self.first_name, self.middle_name, self.last_name, self.second_last_name]
            .into_iter()
            .flatten()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        let name = match (self.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()), parts.is_empty()) {
            (Some(_), false) => {
                p.add("name", "give either `name` or the name parts, not both");
                String::new()
            }
            (Some(name), true) => name,
            (None, false) => parts.join(" "),
            (None, true) => {
                p.add("name", "is required (or firstName/lastName)");
                String::new()
            }
        };
        if name.chars().count() > 300 || name.chars().any(char::is_control) {
            p.add("name", "must be at most 300 printable characters");
        }
        let date_of_birth = match self.date_of_birth.as_deref() {
            None => None,
            Some(raw) => {
                let date = sanctions::parse_date(raw);
                if date.is_none() {
                    p.add("dateOfBirth", "must be a calendar date YYYY-MM-DD");
                }
                date
            }
        };
        let country = match self.country {
            None => None,
            Some(code) if code.len() == 2 && sanctions::is_country_code(&code.to_ascii_uppercase()) => {
                Some(code.to_ascii_uppercase())
            }
            Some(_) => {
                p.add("country", "must be an ISO 3166-1 alpha-2 code such as VE");
                None
            }
        };
        let lists = match self.lists {
            None => None,
            Some(lists) => {
                let names: Vec<&str> = lists.iter().map(|l| l.as_str()).collect();
                let chosen = ListSelection::parse(&names.join(",")).ok();
                if chosen.is_none() {
                    p.add("lists", "must name at least one list");
                }
                chosen
            }
        };
        if !p.0.is_empty() {
            return Err(ApiError::Validation { detail: "The screening request is not valid.".into(), errors: p.0 });
        }
        Ok((sanctions::Query { name, date_of_birth, country, kind: self.kind }, lists))
    }
}

impl From<SanctionsError> for ApiError {
    fn from(err: SanctionsError) -> Self {
        match err {
            SanctionsError::NotLoaded => ApiError::Unavailable {
                detail: "No sanctions list is loaded yet; run `onboard sanctions load`.",
                retry_after_secs: 30,
            },
            // Asked for by name: what is missing is the request's to fix or to wait for.
            SanctionsError::Missing(lists) => {
                ApiError::Conflict(format!("The sanctions lists {lists} are not loaded."))
            }
            SanctionsError::Store(e) => e.into(),
            other => ApiError::Internal(other.into()),
        }
    }
}

/// Screens a name against the current lists (or those of `lists`); the screening and the
/// action are recorded.
#[utoipa::path(post, path = "/admin/sanctions/screen", tag = "Staff", request_body = ScreenRequest, security(("bearer" = [])),
    responses((status = 200, body = crate::sanctions::Screening, description = "Candidates that reach review, best first"), BadRequest, Unauthorized, Forbidden, Unavailable,
        (status = 409, description = "A list named in `lists` is not loaded", body = super::error::Problem, content_type = "application/problem+json"),
        UnsupportedMediaType,
    ))]
pub(super) async fn screen(
    State(state): State<AppState>,
    staff: StaffAuth,
    ApiJson(body): ApiJson<ScreenRequest>,
) -> Result<Json<Screening>, ApiError> {
    let staff = staff.require(StaffRole::Compliance)?;
    let (query, lists) = body.parse()?;
    let screening =
        core::staff::screen(&state.store, &state.sanctions, &query, lists.as_ref(), &staff.actor(), now_ms()).await?;
    Ok(Json(screening))
}

/// The newest of the list versions screenings use now (`/admin/sanctions/lists`: each list's).
#[utoipa::path(get, path = "/admin/sanctions/list", tag = "Staff", security(("bearer" = [])),
    responses((status = 200, body = crate::store::ListVersion, description = "The list version: id, list, source, publication date, entry counts"),
        Unauthorized, Forbidden, (status = 503, description = "No list is loaded", body = super::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn current_list(
    State(state): State<AppState>,
    staff: StaffAuth,
) -> Result<Json<ListVersion>, ApiError> {
    staff.require(StaffRole::Compliance)?;
    let current = state.sanctions.current();
    let newest = current.iter().max_by_key(|l| l.version.id).ok_or(SanctionsError::NotLoaded)?;
    Ok(Json(newest.version.clone()))
}

/// The version of each list screenings use now, in list order (empty when none is loaded).
#[utoipa::path(get, path = "/admin/sanctions/lists", tag = "Staff", security(("bearer" = [])),
    responses((status = 200, body = [crate::store::ListVersion], description = "Each loaded list's current version"),
        Unauthorized, Forbidden))]
pub(super) async fn current_lists(
    State(state): State<AppState>,
    staff: StaffAuth,
) -> Result<Json<Vec<ListVersion>>, ApiError> {
    staff.require(StaffRole::Compliance)?;
    Ok(Json(state.sanctions.current().iter().map(|l| l.version.clone()).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobFilter {
    kind: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct JobView {
    id: i64,
    kind: String,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    run_at: String,
}

/// The job queue (operator): by kind and state, newest first.
#[utoipa::path(get, path = "/admin/jobs", tag = "Staff", security(("bearer" = [])),
    params(("kind" = Option<String>, Query), ("state" = Option<String>, Query, pattern = "^(queued|running|done|dead)$", description = "queued, running, done or dead"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 100")),
    responses((status = 200, body = [JobView], description = "The jobs, newest first"),
        (status = 400, description = "A bad filter or query string", body = super::error::Problem), Unauthorized, Forbidden))]
pub(super) async fn jobs(
    State(state): State<AppState>,
    staff: StaffAuth,
    ApiQuery(filter): ApiQuery<JobFilter>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    staff.require(StaffRole::Operator)?;
    if let Some(s) = filter.state.as_deref()
        && !["queued", "running", "done", "dead"].contains(&s)
    {
        return Err(ApiError::invalid_field(
            "The job filter is not valid.",
            "state",
            "must be queued, running, done or dead",
        ));
    }
    let rows = state
        .store
        .list_jobs(filter.kind.as_deref(), filter.state.as_deref(), filter.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|JobRow { id, kind, state, attempts, last_error, run_at }| JobView {
                id,
                kind,
                state,
                attempts,
                last_error,
                run_at: super::rfc3339(run_at),
            })
            .collect(),
    ))
}

/// Puts a dead-lettered job back in the queue (operator; audited).
#[utoipa::path(post, path = "/admin/jobs/{id}/retry", tag = "Staff", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = RetriedJob, description = "Queued again"),
        Unauthorized, Forbidden, (status = 404, description = "No dead-lettered job with this id", body = super::error::Problem)))]
pub(super) async fn retry_job(
    State(state): State<AppState>,
    staff: StaffAuth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<RetriedJob>, ApiError> {
    let staff = staff.require(StaffRole::Operator)?;
    if !core::staff::retry_job(&state.store, id, &staff.actor(), now_ms()).await? {
        return Err(ApiError::NotFound(format!("No dead-lettered job {id}.")));
    }
    Ok(Json(RetriedJob { id, state: "queued" }))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct RetriedJob {
    id: i64,
    /// `queued`.
    state: &'static str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CaseFilter {
    after: Option<i64>,
    limit: Option<i64>,
}

/// An open case with the candidates of the screening that opened it.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaseView {
    #[serde(flatten)]
    case: ComplianceCase,
    /// Pass as `after` for the next page.
    cursor: i64,
    /// The candidates of the screening that opened the case.
    #[schema(value_type = Vec<crate::sanctions::Candidate>)]
    matches: serde_json::Value,
}

impl From<ComplianceCase> for CaseView {
    fn from(case: ComplianceCase) -> Self {
        let matches = case.matches.as_deref().and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default();
        Self { cursor: case.id, case, matches }
    }
}

/// Users waiting in `UpgradePending/Compliance`, oldest first.
#[utoipa::path(get, path = "/admin/compliance", tag = "Staff", security(("bearer" = [])),
    params(("after" = Option<i64>, Query, description = "The `cursor` of the last case of the previous page"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 100")),
    responses((status = 200, body = [CaseView], description = "Cases: the user's identity, the screening's candidates, why the case was opened, a cursor"),
        (status = 400, description = "A bad query string", body = super::error::Problem), Unauthorized, Forbidden))]
pub(super) async fn compliance_cases(
    State(state): State<AppState>,
    staff: StaffAuth,
    ApiQuery(filter): ApiQuery<CaseFilter>,
) -> Result<Json<Vec<CaseView>>, ApiError> {
    staff.require(StaffRole::Compliance)?;
    let cases =
        state.store.compliance_cases(filter.after.unwrap_or(0), filter.limit.unwrap_or(100).clamp(1, 1000)).await?;
    Ok(Json(cases.into_iter().map(CaseView::from).collect()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CaseDecision, example = json!({"reason": "Different person: DOB and nationality differ from the listed entity"}))]
pub(super) struct Decision {
    /// Why, for the audit log and the user's timeline.
    #[schema(min_length = 1)]
    reason: String,
}

/// Decides a case (audited): `clear` (`CLEAR`) puts the user back on track; `block` makes it
/// `UpgradeFailed/ComplianceBlocked`.
async fn decide_case<const CLEAR: bool>(
    State(state): State<AppState>,
    staff: StaffAuth,
    ApiPath(user_id): ApiPath<String>,
    ApiJson(body): ApiJson<Decision>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let staff = staff.require(StaffRole::Compliance)?;
    let reason = crate::domain::clean_text(&body.reason, 2000, true)
        .map_err(|e| ApiError::invalid_field("The decision is not valid.", "reason", e.to_string()))?;
    let decision =
        CaseDecision { user: user_id.clone(), clear: CLEAR, reason: reason.to_owned(), actor: staff.actor() };
    let to = core::onboarding::decide_case(&state.store, decision, now_ms()).await.map_err(|e| match e {
        MoveError::NotFound => ApiError::NotFound(format!("No user {user_id}.")),
        MoveError::WrongState(s) => ApiError::Conflict(format!("The user is not an open compliance case: it is {s}.")),
        MoveError::Held { .. } => ApiError::Conflict(format!("Another reviewer has the case open: {e}.")),
        MoveError::Duplicate(_)
        | MoveError::NothingChanged
        | MoveError::IdentityVerified
        | MoveError::KycNotConfigured => ApiError::Internal(anyhow::anyhow!("{e} on a compliance decision")),
        MoveError::Store(e) => e.into(),
    })?;
    state.jobs.wake();
    Ok(Json(serde_json::json!({ "userId": user_id, "status": to.status, "statusDetail": to.detail })))
}

/// Clears an open case (audited): the user goes back on track.
#[utoipa::path(post, path = "/admin/compliance/{userId}/clear", tag = "Staff", security(("bearer" = [])),
    params(("userId" = String, Path, description = "usr:<uuid>")),
    request_body(content = Decision),
    responses((status = 200, body = super::prospects::UserStatus, description = "Where the user is after the decision"),
        (status = 400, body = super::error::Problem), Unauthorized, Forbidden,
        (status = 404, body = super::error::Problem), (status = 409, description = "Not an open compliance case", body = super::error::Problem),
        UnsupportedMediaType,
    ))]
pub(super) async fn clear_case(
    state: State<AppState>,
    staff: StaffAuth,
    user: ApiPath<String>,
    body: ApiJson<Decision>,
) -> Result<Json<serde_json::Value>, ApiError> {
    decide_case::<true>(state, staff, user, body).await
}

/// Blocks an open case (audited): `UpgradeFailed/ComplianceBlocked`.
#[utoipa::path(post, path = "/admin/compliance/{userId}/block", tag = "Staff", security(("bearer" = [])),
    params(("userId" = String, Path, description = "usr:<uuid>")),
    request_body(content = Decision),
    responses((status = 200, body = super::prospects::UserStatus, description = "Where the user is after the decision"),
        (status = 400, body = super::error::Problem), Unauthorized, Forbidden,
        (status = 404, body = super::error::Problem), (status = 409, description = "Not an open compliance case", body = super::error::Problem),
        UnsupportedMediaType,
    ))]
pub(super) async fn block_case(
    state: State<AppState>,
    staff: StaffAuth,
    user: ApiPath<String>,
    body: ApiJson<Decision>,
) -> Result<Json<serde_json::Value>, ApiError> {
    decide_case::<false>(state, staff, user, body).await
}

/// Any user's CIP timeline (compliance staff).
#[utoipa::path(get, path = "/admin/users/{userId}/events", tag = "Staff", security(("bearer" = [])),
    params(("userId" = String, Path, description = "usr:<uuid>")),
    responses((status = 200, body = super::prospects::Timeline), Unauthorized, Forbidden,
        (status = 404, description = "No such user", body = super::error::Problem)))]
pub(super) async fn user_timeline(
    State(state): State<AppState>,
    staff: StaffAuth,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<super::prospects::Timeline>, ApiError> {
    staff.require(StaffRole::Compliance)?;
    let record = state
        .store
        .prospect_by_public_id(&user_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No user {user_id}.")))?;
    Ok(Json(super::prospects::timeline(&state, &record).await?))
}
