//! The user timeline: find a user by id, external id, e-mail or phone; their identity, screenings,
//! check and KYC results, consents, CIP events and the staff actions on them. The case page
//! shows the same (`identity`, `history`).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::{Nav, PageError, PageQuery, Signed, age, optional_number, render, when};
use crate::auth::staff::StaffRole;
use crate::domain::cip::CipState;
use crate::domain::{Email, PartnerId, Phone, PublicUserId, now_ms};
use crate::http::AppState;
use std::collections::HashMap;

use crate::store::console::{CheckRow, ScreeningRow};
use crate::store::{AuditEntry, Lookup, ProspectRecord, UserEvent};

/// A user's submitted identity as the pages show it.
pub(crate) struct UserView {
    pub user_id: String,
    pub name: String,
    pub date_of_birth: String,
    pub country: String,
    pub address: String,
    pub email: String,
    pub phone: String,
    pub partner: String,
    pub external_id: String,
    pub status: String,
    pub created_at: String,
}

const NONE: &str = "—";

pub(crate) fn full_name(parts: [&Option<String>; 4]) -> String {
    let name = parts.into_iter().flatten().map(String::as_str).collect::<Vec<_>>().join(" ");
    if name.is_empty() { NONE.to_owned() } else { name }
}

fn or_none(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| NONE.to_owned())
}

pub(crate) fn status_of(record: &ProspectRecord) -> String {
    match (&record.cip_status, &record.cip_detail) {
        (Some(status), Some(detail)) => format!("{status}/{detail}"),
        _ => "not in onboarding (seed 000, 001 or sign-up user)".to_owned(),
    }
}

/// Whether the user is an open compliance case.
pub(crate) fn is_open(record: &ProspectRecord) -> bool {
    matches!(record.cip_state(), Ok(Some(state)) if state == CipState::COMPLIANCE)
}

/// The user's submitted identity, as the user and case pages show it.
pub(crate) async fn identity(state: &AppState, record: &ProspectRecord) -> Result<UserView, PageError> {
    let partner = match PartnerId::new(record.partner_id) {
        Ok(id) => state.store.find_partner(id).await?.map(|p| format!("{} ({})", p.name, p.id)),
        Err(_) => None,
    };
    let address = [&record.street, &record.city, &record.state, &record.country]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    Ok(UserView {
        user_id: record.public_id.clone(),
        name: full_name([&record.first_name, &record.middle_name, &record.last_name, &record.second_last_name]),
        date_of_birth: or_none(&record.date_of_birth),
        country: or_none(&record.country),
        address: if address.is_empty() { NONE.to_owned() } else { address },
        email: or_none(&record.email),
        phone: or_none(&record.phone),
        partner: partner.unwrap_or_else(|| record.partner_id.to_string()),
        external_id: or_none(&record.external_user_id),
        status: status_of(record),
        created_at: when(record.created_at),
    })
}

pub(crate) struct ScreeningView {
    pub at: String,
    pub actor: String,
    pub list: String,
    pub decision: String,
    pub top_score: String,
    pub candidates: String,
}

pub(crate) struct CheckView {
    pub check: String,
    pub outcome: String,
    pub reason: String,
    pub at: String,
}

pub(crate) struct EventView {
    pub at: String,
    pub to: String,
    pub from: Option<String>,
    pub reason: String,
    pub actor: String,
}

pub(crate) struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

impl From<AuditEntry> for AuditRow {
    fn from(e: AuditEntry) -> Self {
        Self {
            at: when(e.at),
            actor: e.actor,
            action: e.action,
            target: e.target.unwrap_or_else(|| NONE.to_owned()),
            detail: e.detail,
        }
    }
}

/// What happened to a user: screenings, checks, consents, CIP events (newest first).
pub(crate) struct History {
    pub screenings: Vec<ScreeningView>,
    pub checks: Vec<CheckView>,
    pub privacy: String,
    pub contract: String,
    pub events: Vec<EventView>,
}

pub(crate) fn score(value: Option<f64>) -> String {
    value.map_or_else(|| NONE.to_owned(), |s| format!("{s:.2}"))
}

/// The list versions by id, as "source #id (published …)".
pub(crate) async fn list_names(state: &AppState) -> Result<HashMap<i64, String>, PageError> {
    let lists = state.store.sanctions_lists(1000).await?;
    Ok(lists
        .into_iter()
        .map(|l| {
            let published = l.published_on.map(|p| format!(", published {p}")).unwrap_or_default();
            (l.id, format!("{} {} #{}{published}", l.list, l.source, l.id))
        })
        .collect())
}

/// What the user and case pages show of a user, read once per page.
pub(crate) struct Facts {
    /// Newest first.
    pub screenings: Vec<ScreeningRow>,
    /// Newest generation first.
    pub checks: Vec<CheckRow>,
    /// Oldest first.
    pub events: Vec<UserEvent>,
    /// The list versions by id, as the pages name them.
    pub lists: HashMap<i64, String>,
    /// Staff actions on the user, newest first.
    pub audit: Vec<AuditEntry>,
}

impl Facts {
    pub(crate) async fn read(state: &AppState, record: &ProspectRecord) -> Result<Self, PageError> {
        Ok(Self {
            screenings: state.store.user_screening_history(record.id).await?,
            checks: state.store.user_checks(record.id).await?,
            events: state.store.user_events(record.id).await?,
            lists: list_names(state).await?,
            audit: state.store.audit_for(&record.public_id, 100).await?,
        })
    }

    pub(crate) fn list(&self, id: i64) -> String {
        self.lists.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))
    }
}

pub(crate) fn history(facts: &Facts, record: &ProspectRecord) -> (History, Vec<AuditRow>) {
    let screenings = facts
        .screenings
        .iter()
        .map(|s| {
            let count = serde_json::from_str::<Vec<serde_json::Value>>(&s.matches).map_or(0, |m| m.len());
            ScreeningView {
                at: when(s.created_at),
                actor: s.actor.clone(),
                list: facts.list(s.list_id),
                decision: s.decision.clone(),
                top_score: score(s.top_score),
                candidates: count.to_string(),
            }
        })
        .collect();
    let checks = facts
        .checks
        .iter()
        .map(|c| CheckView {
            check: format!("{} (data version {})", c.check_name, c.generation),
            outcome: c.outcome.clone(),
            reason: c.reason.clone(),
            at: when(c.at),
        })
        .collect();
    let consent = |at: Option<i64>| at.map_or_else(|| "not given".to_owned(), |at| format!("given {}", when(at)));
    let events = facts
        .events
        .iter()
        .rev()
        .map(|e| EventView {
            at: when(e.at),
            to: format!("{}/{}", e.to_status, e.to_detail),
            from: e.from_status.as_ref().map(|s| format!("{s}/{}", e.from_detail.as_deref().unwrap_or_default())),
            reason: e.reason.clone(),
            actor: e.actor.clone(),
        })
        .collect();
    let audit = facts.audit.iter().cloned().map(AuditRow::from).collect();
    let history = History {
        screenings,
        checks,
        privacy: consent(record.privacy_consent_at),
        contract: consent(record.contract_consent_at),
        events,
    };
    (history, audit)
}

/// A partner choice in a filter.
pub(crate) struct PartnerChoice {
    pub id: i64,
    pub name: String,
    pub selected: bool,
}

pub(crate) async fn partner_choices(state: &AppState, selected: Option<i64>) -> Result<Vec<PartnerChoice>, PageError> {
    Ok(state
        .store
        .list_partners()
        .await?
        .into_iter()
        .map(|p| PartnerChoice { id: p.id.get(), name: p.name, selected: Some(p.id.get()) == selected })
        .collect())
}

/// The user's record by public id, or the page's 404.
pub(crate) async fn record(state: &AppState, user_id: &str) -> Result<ProspectRecord, PageError> {
    let missing = || PageError::NotFound(format!("There is no user {user_id}."));
    if user_id.parse::<PublicUserId>().is_err() {
        return Err(missing());
    }
    state.store.prospect_by_public_id(user_id).await?.ok_or_else(missing)
}

#[derive(Template)]
#[template(path = "users.html")]
struct SearchPage {
    nav: Option<Nav>,
    error: Option<String>,
    q: String,
    partners: Vec<PartnerChoice>,
}

#[derive(serde::Deserialize)]
pub(crate) struct SearchQuery {
    q: Option<String>,
    partner: Option<String>,
}

/// `GET /admin/ui/users?q=&partner=`: a user id finds any partner's user; an external id, an
/// e-mail or a phone number is looked up exactly within the chosen partner (they are unique per
/// partner, not across partners).
pub(super) async fn search(
    State(state): State<AppState>,
    signed: Signed,
    PageQuery(query): PageQuery<SearchQuery>,
) -> Result<Response, PageError> {
    signed.require(StaffRole::Compliance)?;
    let partner = optional_number(query.partner.as_deref(), "The partner")?;
    let q = query.q.unwrap_or_default().trim().to_owned();
    let page = |error: Option<String>, partners| SearchPage { nav: signed.nav("users"), error, q: q.clone(), partners };
    if q.is_empty() {
        return Ok(render(&page(None, partner_choices(&state, partner).await?)));
    }
    let found = match find(&state, &q, partner).await? {
        Ok(found) => found,
        Err(message) => {
            let mut response = render(&page(Some(message), partner_choices(&state, partner).await?));
            *response.status_mut() = axum::http::StatusCode::NOT_FOUND;
            return Ok(response);
        }
    };
    Ok(Redirect::to(&format!("/admin/ui/users/{}", found.public_id)).into_response())
}

/// The user `q` names, or why there is none (the page says so); a store failure is the page's.
async fn find(state: &AppState, q: &str, partner: Option<i64>) -> Result<Result<ProspectRecord, String>, PageError> {
    if q.starts_with("usr:") {
        if let Err(e) = q.parse::<PublicUserId>() {
            return Ok(Err(format!("{q} is not a user id: {e}.")));
        }
        return Ok(state.store.prospect_by_public_id(q).await?.ok_or(format!("There is no user {q}.")));
    }
    let Some(partner) = partner.and_then(|p| PartnerId::new(p).ok()) else {
        return Ok(Err("Choose the partner: external ids, e-mails and phone numbers are unique per partner.".into()));
    };
    // What `q` is, in the form its column keeps it.
    let key = if q.contains('@') {
        Email::parse(q).map(|e| e.key()).map_err(|e| format!("{q} is not an e-mail address: {e}."))
    } else if q.starts_with('+') {
        Phone::parse(q).map(|p| p.e164().to_owned()).map_err(|e| format!("{q} is not a phone number: {e}."))
    } else {
        Ok(q.to_owned())
    };
    let key = match key {
        Ok(key) => key,
        Err(why) => return Ok(Err(why)),
    };
    let lookup = if q.contains('@') {
        Lookup::EmailKey(&key)
    } else if q.starts_with('+') {
        Lookup::Phone(&key)
    } else {
        Lookup::ExternalId(&key)
    };
    let found = state.store.find_prospect(partner, lookup).await?;
    Ok(found.ok_or(format!("Partner {partner} has no user with this external id, e-mail or phone number.")))
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    nav: Option<Nav>,
    user: UserView,
    open: bool,
    history: History,
    audit: Vec<AuditRow>,
}

/// `GET /admin/ui/users/{userId}`: one user's timeline.
pub(super) async fn user(
    State(state): State<AppState>,
    signed: Signed,
    Path(user_id): Path<String>,
) -> Result<Response, PageError> {
    signed.require(StaffRole::Compliance)?;
    let record = record(&state, &user_id).await?;
    let (history, audit) = history(&Facts::read(&state, &record).await?, &record);
    let page = UserPage {
        nav: signed.nav("users"),
        user: identity(&state, &record).await?,
        open: is_open(&record),
        history,
        audit,
    };
    Ok(render(&page))
}

/// How long a case has waited, for the queue.
pub(crate) fn waited(opened_at: Option<i64>) -> (String, String) {
    match opened_at {
        Some(at) => (crate::domain::rfc3339(at), age(at, now_ms())),
        None => (String::new(), NONE.to_owned()),
    }
}
