//! The compliance and operations console (issue 26): server-rendered pages under `/admin/ui/` for
//! staff, from the binary, with no script at all (so the Content-Security-Policy can forbid
//! every script and the pages work offline and from the keyboard).
//!
//! Like `http` and `cli`, this is an edge: each handler parses the request, calls the same core
//! function the admin API and the CLI call (`core::onboarding::decide_case`,
//! `core::staff::retry_job`), and renders the answer. What only the console has — its sessions
//! and case holds — is in `core::console`.
//!
//! Security, in the order a request meets it: the session cookie (`HttpOnly`, `SameSite=Strict`,
//! `Secure` and `__Host-` under TLS) names a session stored only as a hash; every state-changing
//! form carries the session's form token (and the sign-in form a double-submit token), and a
//! cross-origin `Origin` is refused besides; pages answer with a strict CSP, `no-store`, and
//! `frame-ancestors 'none'`; askama escapes every value it renders.

mod cases;
mod ops;
mod users;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, OptionalFromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use crate::auth::staff::{Staff, StaffRole};
use crate::core::console::{self as console_core, Session};
use crate::domain::now_ms;
use crate::http::AppState;
use crate::store::StoreError;

/// The console's routes; `startup` serves them beside the API's (they are HTML pages, not API
/// operations, so they are not in `/openapi.json`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/ui", get(home))
        .route("/admin/ui/", get(home))
        .route("/admin/ui/sign-in", get(sign_in_page).post(sign_in))
        .route("/admin/ui/sign-out", post(sign_out))
        .route("/admin/ui/cases", get(cases::queue))
        .route("/admin/ui/cases/{user_id}", get(cases::case))
        .route("/admin/ui/cases/{user_id}/clear", post(cases::clear))
        .route("/admin/ui/cases/{user_id}/block", post(cases::block))
        .route("/admin/ui/cases/{user_id}/release", post(cases::release))
        .route("/admin/ui/users", get(users::search))
        .route("/admin/ui/users/{user_id}", get(users::user))
        .route("/admin/ui/audit", get(ops::audit))
        .route("/admin/ui/ops", get(ops::ops))
        .route("/admin/ui/jobs/{id}/retry", post(ops::retry))
        .route("/admin/ui/assets/console.css", get(stylesheet))
        .layer(axum::middleware::map_response(security_headers))
}

/// No script, no frame, no third-party origin; forms post only to the console itself.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Addresses name users: they never leave for another origin. (`no-referrer` would also make
    // browsers send `Origin: null` on the console's own forms, which the origin check refuses.)
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // Pages show personal data: never kept by the browser or a proxy (the stylesheet may be).
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    const CSS: &str = include_str!("../../assets/console/console.css");
    let headers = [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")];
    (headers, CSS).into_response()
}

// ---- errors -------------------------------------------------------------------------------

/// Why a page could not be shown; rendered as an HTML page with its status (`IntoResponse`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    #[error("{0}")]
    BadRequest(String),
    /// A page needs a role the session does not have, or a form's token is missing or wrong.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the database is unavailable")]
    Unavailable,
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Overloaded => PageError::Unavailable,
            e => PageError::Internal(e.into()),
        }
    }
}

/// A form's token is missing or is not this session's.
const STALE_FORM: &str = "This form was not sent from this console session (its form token is missing or wrong). \
                          Reload the page and send it again.";

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    nav: Option<Nav>,
    title: &'a str,
    message: &'a str,
    back: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            PageError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request"),
            PageError::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
            PageError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            PageError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
            PageError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "console page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong")
            }
        };
        let message = match &self {
            PageError::Internal(_) => "The page could not be built; the error is in the service's log.".to_owned(),
            PageError::Unavailable => "The database is unavailable; try again in a moment.".to_owned(),
            e => e.to_string(),
        };
        let page = ErrorPage { nav: None, title, message: &message, back: "/admin/ui/cases" };
        let mut response = render(&page);
        *response.status_mut() = status;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A template as an HTML answer.
pub(crate) fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => axum::response::Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

// ---- request parts ------------------------------------------------------------------------

/// A query string, with a malformed one answered as an HTML 400.
pub(crate) struct PageQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PageQuery<T> {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| PageQuery(q.0))
            .map_err(|e| PageError::BadRequest(format!("The address's query string cannot be read: {}", e.body_text())))
    }
}

/// A form body (`application/x-www-form-urlencoded`), with a malformed one answered as an HTML
/// 400 (which changes nothing).
pub(crate) struct PageForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for PageForm<T> {
    type Rejection = PageError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Form::<T>::from_request(request, state)
            .await
            .map(|f| PageForm(f.0))
            .map_err(|e| PageError::BadRequest(format!("The form cannot be read: {}", e.body_text())))
    }
}

/// A form field that is a number, or absent when empty (browsers send empty selects as `x=`).
pub(crate) fn optional_number(raw: Option<&str>, what: &str) -> Result<Option<i64>, PageError> {
    match raw.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| PageError::BadRequest(format!("{what} must be a number."))),
    }
}

// ---- sessions -----------------------------------------------------------------------------

/// The session cookie's name: `__Host-` under TLS, so that the browser keeps it only for this
/// origin with `Secure` and `Path=/` (no subdomain or plain-HTTP page can set or shadow it).
fn cookie_name(tls: bool) -> &'static str {
    if tls { "__Host-onboard-console" } else { "onboard-console" }
}

/// The sign-in form's double-submit cookie (there is no session yet to bind its token to),
/// `__Host-` under TLS for the same reason as the session's.
fn pre_session_cookie(tls: bool) -> &'static str {
    if tls { "__Host-onboard-console-sign-in" } else { "onboard-console-sign-in" }
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(n, v)| (n == name).then_some(v))
}

fn set_cookie(tls: bool, name: &str, value: &str, max_age_secs: u64) -> HeaderValue {
    // Without TLS the cookie cannot be `__Host-` (that needs `Secure`), so its path narrows it
    // to the console instead.
    let (path, secure) = if tls { ("/", "; Secure") } else { ("/admin/ui", "") };
    let cookie = format!("{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}");
    HeaderValue::try_from(cookie).expect("cookie values are base64url")
}

/// The menu of a signed-in page.
pub(crate) struct Nav {
    pub page: &'static str,
    pub operator: bool,
    pub csrf: String,
    pub name: String,
    pub role: String,
}

/// A request from a signed-in staff member. Without a live session a page is a redirect to the
/// sign-in page and a form is refused (403); a form from another origin is refused too.
pub(crate) struct Signed(pub Session);

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let reading = parts.method == Method::GET || parts.method == Method::HEAD;
        if !reading && !same_origin(&parts.headers) {
            return Err(PageError::Forbidden("The form was sent from another site.".into()).into_response());
        }
        match live_session(parts, state).await? {
            Some(session) => Ok(Signed(session)),
            None if reading => Err(Redirect::to("/admin/ui/sign-in").into_response()),
            None => {
                Err(PageError::Forbidden("Sign in first: there is no live console session.".into()).into_response())
            }
        }
    }
}

impl OptionalFromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        Ok(live_session(parts, state).await?.map(Signed))
    }
}

/// The live session the request's cookie names, if any.
async fn live_session(parts: &Parts, state: &AppState) -> Result<Option<Session>, Response> {
    let settings = &state.settings;
    let Some(cookie) = cookie_value(&parts.headers, cookie_name(settings.tls)) else {
        return Ok(None);
    };
    console_core::session(&state.store, &settings.console, cookie, now_ms())
        .await
        .map_err(|e| PageError::from(e).into_response())
}

impl Signed {
    pub(crate) fn staff(&self) -> &Staff {
        &self.0.staff
    }

    /// The menu, with `page` marked as the current one.
    pub(crate) fn nav(&self, page: &'static str) -> Option<Nav> {
        let staff = &self.0.staff;
        Some(Nav {
            page,
            operator: staff.role == StaffRole::Operator,
            csrf: self.0.csrf.clone(),
            name: staff.name.clone(),
            role: staff.role.to_string(),
        })
    }

    /// Refuses a form whose token is not this session's.
    pub(crate) fn check_form(&self, presented: &str) -> Result<(), PageError> {
        if self.0.csrf_matches(presented) { Ok(()) } else { Err(PageError::Forbidden(STALE_FORM.into())) }
    }

    /// Refuses a page of a role the session does not have (operators have every role, as on
    /// the admin API).
    pub(crate) fn require(&self, role: StaffRole) -> Result<(), PageError> {
        let staff = &self.0.staff;
        if staff.has(role) {
            Ok(())
        } else {
            Err(PageError::Forbidden(format!("This page needs the {role} role; you are signed in as {}.", staff.role)))
        }
    }
}

/// A state-changing request is refused when the browser says it comes from another origin.
/// Browsers send `Origin` on every POST; a request without it (a script, a test) is judged by
/// its form token alone.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

// ---- sign-in, sign-out --------------------------------------------------------------------

async fn home(signed: Option<Signed>) -> Redirect {
    Redirect::to(if signed.is_some() { "/admin/ui/cases" } else { "/admin/ui/sign-in" })
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    nav: Option<Nav>,
    csrf: String,
    error: Option<String>,
    max_hours: u64,
    idle_minutes: u64,
}

/// The sign-in form with a fresh double-submit token in the form and in a cookie.
fn sign_in_form(state: &AppState, status: StatusCode, error: Option<String>) -> Response {
    let token = console_core::pre_session_token();
    let settings = &state.settings.console;
    let page = SignInPage {
        nav: None,
        csrf: token.clone(),
        error,
        max_hours: settings.session_max_hours,
        idle_minutes: settings.session_idle_minutes,
    };
    let mut response = render(&page);
    *response.status_mut() = status;
    // Ten minutes to paste a token.
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state.settings.tls, pre_session_cookie(state.settings.tls), &token, 600),
    );
    response
}

async fn sign_in_page(State(state): State<AppState>, signed: Option<Signed>) -> Response {
    if signed.is_some() {
        return Redirect::to("/admin/ui/cases").into_response();
    }
    sign_in_form(&state, StatusCode::OK, None)
}

#[derive(serde::Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

async fn sign_in(State(state): State<AppState>, headers: HeaderMap, PageForm(form): PageForm<SignInForm>) -> Response {
    let cookie = cookie_value(&headers, pre_session_cookie(state.settings.tls)).unwrap_or_default();
    let echoed = !form.csrf.is_empty() && console_core::same_token(cookie, &form.csrf);
    if !same_origin(&headers) || !echoed {
        return PageError::Forbidden(STALE_FORM.into()).into_response();
    }
    let signed_in = match console_core::sign_in(&state.store, form.token.trim(), now_ms()).await {
        Ok(signed_in) => signed_in,
        Err(e) => return PageError::from(e).into_response(),
    };
    let Some((secret, session)) = signed_in else {
        tracing::warn!("console sign-in refused: not a live staff token");
        let error = "That is not a live staff token: it is mistyped, revoked, or not a staff token.";
        return sign_in_form(&state, StatusCode::UNAUTHORIZED, Some(error.into()));
    };
    tracing::info!(staff = %session.staff.name, "console sign-in");
    let tls = state.settings.tls;
    let max_age = state.settings.console.session_max_hours.saturating_mul(3600);
    let mut response = Redirect::to("/admin/ui/cases").into_response();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, set_cookie(tls, cookie_name(tls), secret.expose_secret(), max_age));
    headers.append(header::SET_COOKIE, set_cookie(tls, pre_session_cookie(tls), "", 0));
    response
}

#[derive(serde::Deserialize)]
pub(crate) struct TokenOnly {
    #[serde(default)]
    pub csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    signed: Signed,
    PageForm(form): PageForm<TokenOnly>,
) -> Result<Response, PageError> {
    signed.check_form(&form.csrf)?;
    console_core::sign_out(&state.store, &signed.0, now_ms()).await?;
    let tls = state.settings.tls;
    let mut response = Redirect::to("/admin/ui/sign-in").into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(tls, cookie_name(tls), "", 0));
    Ok(response)
}

// ---- shared formatting --------------------------------------------------------------------

/// A stored time as the pages show it: `2026-12-07 14:03:12 UTC`.
pub(crate) fn when(ms: i64) -> String {
    let text = crate::domain::rfc3339(ms);
    match text.split_once('T') {
        Some((day, time)) => format!("{day} {} UTC", time.get(..8).unwrap_or(time)),
        None => text,
    }
}

/// How long ago `then` was, roughly: `3 min`, `5 h`, `2 days`.
pub(crate) fn age(then: i64, now: i64) -> String {
    let minutes = now.saturating_sub(then).max(0) / 60_000;
    match minutes {
        0 => "just now".into(),
        1..=119 => format!("{minutes} min"),
        120..=2879 => format!("{} h", minutes / 60),
        _ => format!("{} days", minutes / 1440),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("onboard-console-x=1; onboard-console=abc; y=2"));
        assert_eq!(cookie_value(&headers, "onboard-console"), Some("abc"));
        assert_eq!(cookie_value(&headers, "y"), Some("2"));
        assert_eq!(cookie_value(&headers, "z"), None);
    }

    #[test]
    fn a_cross_origin_form_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&headers), "no Origin: judged by the form token");
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&headers));
    }

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(age(0, 30_000), "just now");
        assert_eq!(age(0, 5 * 60_000), "5 min");
        assert_eq!(age(0, 5 * 3_600_000), "5 h");
        assert_eq!(age(0, 3 * 86_400_000), "3 days");
    }
}
