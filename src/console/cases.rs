//! The review queue and the case page: open compliance cases oldest first, the evidence of one
//! case next to the user's submitted identity, and the decision forms. Deciding is
//! `core::onboarding::decide_case`, as on the admin API and the CLI.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::users::{self, AuditRow, History, PartnerChoice, UserView};
use super::{Nav, PageError, PageForm, PageQuery, Signed, optional_number, render, when};
use crate::auth::staff::StaffRole;
use crate::core::console::{self as console_core};
use crate::core::onboarding::{CaseDecision, MoveError};
use crate::domain::now_ms;
use crate::http::AppState;
use crate::sanctions::parse::Entry;
use crate::store::console::{CaseReason, QueueFilter};

const PAGE: i64 = 50;

pub(crate) struct QueueRowView {
    user_id: String,
    name: String,
    partner: String,
    reason: String,
    top_score: String,
    opened_at: String,
    waiting: String,
    holder: Option<String>,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    nav: Option<Nav>,
    notice: Option<String>,
    partners: Vec<PartnerChoice>,
    reason: String,
    filtered: bool,
    rows: Vec<QueueRowView>,
    next: Option<String>,
}

#[derive(serde::Deserialize)]
pub(crate) struct QueueQuery {
    partner: Option<String>,
    reason: Option<String>,
    after: Option<String>,
    /// After a decision: the user decided and how.
    decided: Option<String>,
    outcome: Option<String>,
}

/// `GET /admin/ui/cases`: open cases, oldest first, by partner and reason, 50 a page.
pub(super) async fn queue(
    State(state): State<AppState>,
    signed: Signed,
    PageQuery(query): PageQuery<QueueQuery>,
) -> Result<Response, PageError> {
    signed.require(StaffRole::Compliance)?;
    let partner = optional_number(query.partner.as_deref(), "The partner")?;
    let after = optional_number(query.after.as_deref(), "The page cursor")?.unwrap_or(0);
    let reason = match query.reason.as_deref().unwrap_or_default() {
        "" => None,
        "sanctions" => Some(CaseReason::Sanctions),
        "kyc" => Some(CaseReason::Kyc),
        other => return Err(PageError::BadRequest(format!("{other:?} is not a reason: use sanctions or kyc."))),
    };
    let filter = QueueFilter { partner, reason, after, limit: PAGE };
    let rows = state.store.review_queue(filter, now_ms()).await?;
    let next = (rows.len() as i64 == PAGE).then(|| {
        let mut next = format!("after={}", rows.last().map_or(0, |r| r.id));
        if let Some(p) = partner {
            next.push_str(&format!("&partner={p}"));
        }
        if let Some(r) = query.reason.as_deref().filter(|r| !r.is_empty()) {
            next.push_str(&format!("&reason={r}"));
        }
        next
    });
    let rows = rows
        .into_iter()
        .map(|row| {
            let (opened_at, waiting) = users::waited(row.opened_at);
            QueueRowView {
                user_id: row.public_id,
                name: users::full_name([&row.first_name, &row.middle_name, &row.last_name, &row.second_last_name]),
                partner: format!("{} ({})", row.partner_name, row.partner_id),
                reason: row.reason.unwrap_or_default(),
                top_score: users::score(row.top_score),
                opened_at,
                waiting,
                holder: row.holder,
            }
        })
        .collect();
    let notice = match (query.decided, query.outcome.as_deref()) {
        (Some(user), Some(outcome @ ("cleared" | "blocked")))
            if user.parse::<crate::domain::PublicUserId>().is_ok() =>
        {
            Some(format!("Case {user} {outcome}."))
        }
        _ => None,
    };
    let page = QueuePage {
        nav: signed.nav("cases"),
        notice,
        partners: users::partner_choices(&state, partner).await?,
        reason: query.reason.unwrap_or_default(),
        filtered: partner.is_some() || reason.is_some(),
        rows,
        next,
    };
    Ok(render(&page))
}

/// Who holds the case, as the page says it.
pub(crate) enum LockView {
    Mine(String),
    Other(String, String),
    Closed(String),
}

/// One candidate of the screening, with what the list says about the entry.
pub(crate) struct CandidateView {
    name: String,
    kind: String,
    entity_id: i64,
    matched_name: String,
    score: String,
    name_score: String,
    decision: String,
    aliases: Vec<String>,
    dates_of_birth: Vec<String>,
    places_of_birth: Vec<String>,
    nationalities: Vec<String>,
    programs: Vec<String>,
    list: String,
    reasons: Vec<String>,
    remarks: Option<String>,
}

/// A candidate as stored with the screening (`sanctions::Candidate`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredCandidate {
    #[serde(default)]
    list_version: Option<i64>,
    entity_id: i64,
    name: String,
    matched_name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    programs: Vec<String>,
    score: f64,
    name_score: f64,
    decision: String,
    #[serde(default)]
    reasons: Vec<String>,
}

#[derive(Template)]
#[template(path = "case.html")]
struct CasePage {
    nav: Option<Nav>,
    user: UserView,
    error: Option<String>,
    lock: LockView,
    reason: String,
    candidates: Vec<CandidateView>,
    kyc_hold: bool,
    open: bool,
    csrf: String,
    history: History,
    audit: Vec<AuditRow>,
}

/// `GET /admin/ui/cases/{userId}`: the case, held for this reviewer while it is open.
pub(super) async fn case(
    State(state): State<AppState>,
    signed: Signed,
    Path(user_id): Path<String>,
) -> Result<Response, PageError> {
    signed.require(StaffRole::Compliance)?;
    case_page(&state, &signed, &user_id, None).await
}

async fn case_page(
    state: &AppState,
    signed: &Signed,
    user_id: &str,
    error: Option<String>,
) -> Result<Response, PageError> {
    let record = users::record(state, user_id).await?;
    let open = users::is_open(&record);
    let lock = if open {
        let hold =
            console_core::hold_case(&state.store, &state.settings.console, user_id, signed.staff(), now_ms()).await?;
        if hold.holder == signed.staff().actor() {
            LockView::Mine(when(hold.expires_at))
        } else {
            LockView::Other(hold.holder, when(hold.expires_at))
        }
    } else {
        LockView::Closed(users::status_of(&record))
    };
    let facts = users::Facts::read(state, &record).await?;
    let reason = facts.events.last().map(|e| e.reason.clone()).unwrap_or_default();
    let kyc_hold = facts
        .checks
        .iter()
        .any(|c| c.generation == record.cip_generation && c.check_name == "kyc" && c.outcome == "review");
    let candidates = candidates(state, &facts)?;
    let (history, audit) = users::history(&facts, &record);
    let status = if error.is_some() { StatusCode::CONFLICT } else { StatusCode::OK };
    let page = CasePage {
        nav: signed.nav("cases"),
        user: users::identity(state, &record).await?,
        error,
        lock,
        reason,
        candidates,
        kyc_hold,
        open,
        csrf: signed.0.csrf.clone(),
        history,
        audit,
    };
    let mut response = render(&page);
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    Ok(response)
}

/// The candidates of the user's newest screening, each with the entry as the list it was
/// screened against describes it (aliases, dates of birth, nationalities, remarks), when this
/// node has that list version loaded.
fn candidates(state: &AppState, facts: &users::Facts) -> Result<Vec<CandidateView>, PageError> {
    let Some(latest) = facts.screenings.first() else {
        return Ok(Vec::new());
    };
    let stored: Vec<StoredCandidate> = serde_json::from_str(&latest.matches).map_err(|e| {
        PageError::Internal(anyhow::anyhow!("screening of {}: stored candidates: {e}", latest.created_at))
    })?;
    let current = state.sanctions.current();
    Ok(stored
        .into_iter()
        .map(|c| {
            // Screenings recorded before there were several lists name no version: theirs is the row's.
            let version = c.list_version.unwrap_or(latest.list_id);
            let list = facts.list(version);
            let loaded = current.iter().find(|l| l.version.id == version);
            let entry = loaded.and_then(|l| l.index.entries().iter().find(|e| e.id == c.entity_id));
            let mut view = CandidateView {
                name: c.name,
                kind: c.kind,
                entity_id: c.entity_id,
                matched_name: c.matched_name,
                score: format!("{:.2}", c.score),
                name_score: format!("{:.2}", c.name_score),
                decision: c.decision,
                aliases: Vec::new(),
                dates_of_birth: Vec::new(),
                places_of_birth: Vec::new(),
                nationalities: Vec::new(),
                programs: c.programs,
                list: list.clone(),
                reasons: c.reasons,
                remarks: None,
            };
            match entry {
                Some(entry) => describe(&mut view, entry),
                None => {
                    view.remarks = Some(format!(
                        "The details of entry {} are in list {list}, which this node no longer screens with.",
                        view.entity_id
                    ))
                }
            }
            view
        })
        .collect())
}

fn describe(view: &mut CandidateView, entry: &Entry) {
    let remarks = &entry.remarks;
    view.aliases = entry.alt_names.iter().map(|a| format!("{} ({})", a.name, a.kind)).collect();
    view.aliases.extend(remarks.aliases.iter().cloned());
    view.dates_of_birth = remarks
        .dobs
        .iter()
        .map(|d| if d.is_exact() { d.from.to_string() } else { format!("{} to {}", d.from, d.to) })
        .collect();
    view.places_of_birth = remarks.places_of_birth.clone();
    view.nationalities = remarks.nationalities.iter().chain(&remarks.citizenships).cloned().collect();
    view.nationalities.dedup();
    view.remarks = Some(entry.remarks_text.clone()).filter(|r| !r.is_empty());
}

#[derive(serde::Deserialize)]
pub(crate) struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /admin/ui/cases/{userId}/release`: another reviewer may take the case now.
pub(super) async fn release(
    State(state): State<AppState>,
    signed: Signed,
    Path(user_id): Path<String>,
    PageForm(form): PageForm<super::TokenOnly>,
) -> Result<Response, PageError> {
    signed.check_form(&form.csrf)?;
    signed.require(StaffRole::Compliance)?;
    users::record(&state, &user_id).await?;
    console_core::release_case(&state.store, &user_id, signed.staff()).await?;
    Ok(Redirect::to("/admin/ui/cases").into_response())
}

/// `POST /admin/ui/cases/{userId}/clear`.
pub(super) async fn clear(
    state: State<AppState>,
    signed: Signed,
    user: Path<String>,
    form: PageForm<DecisionForm>,
) -> Result<Response, PageError> {
    decide(state, signed, user, form, true).await
}

/// `POST /admin/ui/cases/{userId}/block`.
pub(super) async fn block(
    state: State<AppState>,
    signed: Signed,
    user: Path<String>,
    form: PageForm<DecisionForm>,
) -> Result<Response, PageError> {
    decide(state, signed, user, form, false).await
}

async fn decide(
    State(state): State<AppState>,
    signed: Signed,
    Path(user_id): Path<String>,
    PageForm(form): PageForm<DecisionForm>,
    clear: bool,
) -> Result<Response, PageError> {
    signed.check_form(&form.csrf)?;
    signed.require(StaffRole::Compliance)?;
    let Ok(reason) = crate::domain::clean_text(&form.reason, 2000, true) else {
        let error = "Write why: the reason is 1–2000 printable characters, and goes to the audit log.";
        return case_page(&state, &signed, &user_id, Some(error.into())).await.map(|mut r| {
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        });
    };
    users::record(&state, &user_id).await?;
    let decision =
        CaseDecision { user: user_id.clone(), clear, reason: reason.to_owned(), actor: signed.staff().actor() };
    match crate::core::onboarding::decide_case(&state.store, decision, now_ms()).await {
        Ok(_) => {
            state.jobs.wake();
            let outcome = if clear { "cleared" } else { "blocked" };
            Ok(Redirect::to(&format!("/admin/ui/cases?decided={user_id}&outcome={outcome}")).into_response())
        }
        Err(MoveError::NotFound) => Err(PageError::NotFound(format!("There is no user {user_id}."))),
        Err(MoveError::WrongState(s)) => {
            case_page(&state, &signed, &user_id, Some(format!("Not decided: the case is closed — the user is {s}.")))
                .await
        }
        Err(e @ MoveError::Held { .. }) => {
            case_page(&state, &signed, &user_id, Some(format!("Not decided: {e}."))).await
        }
        Err(MoveError::Store(e)) => Err(e.into()),
        Err(e) => Err(PageError::Internal(anyhow::anyhow!("{e} on a compliance decision"))),
    }
}
