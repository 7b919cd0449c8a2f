//! Operations (operator role): the job queue, dead letters with retry (`core::staff::retry_job`,
//! as on the admin API and the CLI), the sanctions lists loaded, partners, webhook delivery
//! failures; and the audit log, for every staff role.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::users::AuditRow;
use super::{Nav, PageError, PageForm, PageQuery, Signed, TokenOnly, age, optional_number, render, when};
use crate::auth::staff::StaffRole;
use crate::domain::now_ms;
use crate::http::AppState;

const AUDIT_PAGE: i64 = 50;

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Option<Nav>,
    audit: Vec<AuditRow>,
    next: Option<i64>,
}

#[derive(serde::Deserialize)]
pub(crate) struct AuditQuery {
    before: Option<String>,
}

/// `GET /admin/ui/audit?before=`: every staff action, newest first.
pub(super) async fn audit(
    State(state): State<AppState>,
    signed: Signed,
    PageQuery(query): PageQuery<AuditQuery>,
) -> Result<Response, PageError> {
    signed.require(StaffRole::Compliance)?;
    let before = optional_number(query.before.as_deref(), "The page cursor")?;
    let entries = state.store.audit_page(before, AUDIT_PAGE).await?;
    let next = (entries.len() as i64 == AUDIT_PAGE).then(|| entries.last().map_or(0, |e| e.id));
    let page = AuditPage { nav: signed.nav("audit"), audit: entries.into_iter().map(AuditRow::from).collect(), next };
    Ok(render(&page))
}

pub(crate) struct KindView {
    kind: String,
    queued: i64,
    running: i64,
    dead: i64,
    oldest: String,
}

pub(crate) struct DeadJobView {
    id: i64,
    kind: String,
    attempts: i64,
    last_error: String,
    run_at: String,
}

pub(crate) struct ListView {
    id: i64,
    list: &'static str,
    source: String,
    published: String,
    entries: u64,
    loaded_at: String,
    current: bool,
}

pub(crate) struct PartnerView {
    id: i64,
    name: String,
    environment: String,
    users: i64,
    created_at: String,
}

pub(crate) struct FailureView {
    at: String,
    partner: i64,
    url: String,
    event: String,
    attempt: i64,
    result: String,
    status: String,
    error: String,
}

#[derive(Template)]
#[template(path = "ops.html")]
struct OpsPage {
    nav: Option<Nav>,
    notice: Option<String>,
    error: Option<String>,
    queue: Vec<KindView>,
    dead: Vec<DeadJobView>,
    csrf: String,
    lists: Vec<ListView>,
    partners: Vec<PartnerView>,
    webhook_failures: Vec<FailureView>,
}

#[derive(serde::Deserialize)]
pub(crate) struct OpsQuery {
    retried: Option<String>,
}

/// `GET /admin/ui/ops`.
pub(super) async fn ops(
    State(state): State<AppState>,
    signed: Signed,
    PageQuery(query): PageQuery<OpsQuery>,
) -> Result<Response, PageError> {
    signed.require(StaffRole::Operator)?;
    let retried = optional_number(query.retried.as_deref(), "The job")?;
    let notice = retried.map(|id| format!("Job {id} is queued again."));
    ops_page(&state, &signed, notice, None).await
}

async fn ops_page(
    state: &AppState,
    signed: &Signed,
    notice: Option<String>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let now = now_ms();
    let queue = state
        .store
        .queue_stats(now)
        .await?
        .into_iter()
        .map(|q| KindView {
            kind: q.kind,
            queued: q.queued,
            running: q.running,
            dead: q.dead,
            oldest: q.oldest_waiting.map_or_else(|| "—".to_owned(), |at| age(at, now)),
        })
        .collect();
    let dead = state
        .store
        .list_jobs(None, Some("dead"), 100)
        .await?
        .into_iter()
        .map(|j| DeadJobView {
            id: j.id,
            kind: j.kind,
            attempts: j.attempts,
            last_error: j.last_error.unwrap_or_default(),
            run_at: when(j.run_at),
        })
        .collect();
    let current: Vec<i64> = state.sanctions.current().iter().map(|l| l.version.id).collect();
    let lists = state
        .store
        .sanctions_lists(20)
        .await?
        .into_iter()
        .map(|l| ListView {
            id: l.id,
            list: l.list.as_str(),
            source: l.source,
            published: l.published_on.unwrap_or_else(|| "—".to_owned()),
            entries: l.counts.entries,
            loaded_at: when(l.loaded_at),
            current: current.contains(&l.id),
        })
        .collect();
    let partners = state
        .store
        .partner_overview()
        .await?
        .into_iter()
        .map(|p| PartnerView {
            id: p.id,
            name: p.name,
            environment: p.environment,
            users: p.users,
            created_at: when(p.created_at),
        })
        .collect();
    let webhook_failures = state
        .store
        .webhook_failures(50)
        .await?
        .into_iter()
        .map(|f| FailureView {
            at: when(f.at),
            partner: f.partner_id,
            url: without_credentials(&f.url),
            event: format!("{} {}", f.event_type, f.event_public_id),
            attempt: f.attempt,
            result: f.result,
            status: f.status.map_or_else(|| "—".to_owned(), |s| s.to_string()),
            error: f.error.unwrap_or_default(),
        })
        .collect();
    let status = if error.is_some() { axum::http::StatusCode::CONFLICT } else { axum::http::StatusCode::OK };
    let page = OpsPage {
        nav: signed.nav("ops"),
        notice,
        error,
        queue,
        dead,
        csrf: signed.0.csrf.clone(),
        lists,
        partners,
        webhook_failures,
    };
    let mut response = render(&page);
    if response.status().is_success() {
        *response.status_mut() = status;
    }
    Ok(response)
}

/// An endpoint's address without what may carry a secret (user-info, query, fragment): the
/// page shows where deliveries go, not how the partner authenticates them.
fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            let hidden = parsed.query().is_some() || parsed.fragment().is_some();
            parsed.set_query(None);
            parsed.set_fragment(None);
            format!("{parsed}{}", if hidden { "?…" } else { "" })
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// `POST /admin/ui/jobs/{id}/retry`: a dead job back in the queue, audited.
pub(super) async fn retry(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    signed.check_form(&form.csrf)?;
    signed.require(StaffRole::Operator)?;
    let Ok(id) = id.parse::<i64>() else {
        return Err(PageError::NotFound(format!("There is no job {id}.")));
    };
    if !crate::core::staff::retry_job(&state.store, id, &signed.staff().actor(), now_ms()).await? {
        return ops_page(&state, &signed, None, Some(format!("Job {id} is not a dead letter (any more)."))).await;
    }
    state.jobs.wake();
    Ok(Redirect::to(&format!("/admin/ui/ops?retried={id}")).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoint_addresses_are_shown_without_credentials() {
        use super::without_credentials as shown;
        assert_eq!(shown("https://hooks.example.com/onboard"), "https://hooks.example.com/onboard");
        assert_eq!(shown("https://user:pw@hooks.example.com/x?token=s3cret#f"), "https://hooks.example.com/x?…");
        assert_eq!(shown("not a url"), "(not a URL)");
    }
}
