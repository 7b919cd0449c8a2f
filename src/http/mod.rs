//! The HTTP server: one module per surface, merged here with the cross-cutting layers.

pub mod admin;
pub mod aspnet;
pub mod billing;
pub mod consents;
pub mod docs;
pub mod error;
pub mod extract;
pub mod fields;
pub mod idempotency;
pub mod kyc;
pub mod limits;
pub mod oauth;
pub mod ops;
pub mod partner;
pub mod partner_users;
pub mod prospects;
pub mod signup;
pub mod tls;
pub mod trace;
pub mod user;
pub mod webhooks;

#[cfg(test)]
mod properties;

use std::any::Any;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::AuthSettings;
use crate::auth::KeyRing;
use crate::core::signup::SignupSettings;
use crate::store::Store;
use error::ApiError;
use idempotency::IdempotencySettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_grace_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { max_body_bytes: 1024 * 1024, shutdown_grace_secs: 30 }
    }
}

/// What the HTTP layer reads of the configuration (startup takes it from `config::Settings`).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub idempotency: IdempotencySettings,
    pub signup: SignupSettings,
    pub consents: crate::core::consents::ConsentSettings,
    pub console: crate::core::console::ConsoleSettings,
    /// Whether the listener speaks TLS (the console's cookie is then `Secure` and `__Host-`).
    pub tls: bool,
    /// `Strict-Transport-Security`, sent on every answer while the listener speaks TLS.
    pub strict_transport_security: Option<axum::http::HeaderValue>,
}

/// Everything a handler may need. Cloned for every request by axum, so it is one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub store: Store,
    /// Group-committing writer for user inserts.
    pub users: crate::store::UserWriter,
    /// Seed-000 registrations committed or read lately (replays skip the database).
    pub registrations: crate::store::RecentRegistrations,
    pub keys: Arc<KeyRing>,
    pub verified_tokens: crate::auth::cache::VerifiedCredentials,
    pub verified_api_keys: crate::auth::cache::VerifiedCredentials,
    pub settings: HttpConfig,
    pub metrics: PrometheusHandle,
    /// The current sanctions list and its index.
    pub sanctions: crate::sanctions::Sanctions,
    /// Wakes this node's job workers after a request enqueued work.
    pub jobs: crate::jobs::JobWaker,
    /// Argon2id hashing threads (seed 003 passwords).
    pub passwords: crate::auth::passwords::PasswordHasher,
    /// Sends the messages of `mail.send` jobs.
    pub mailer: crate::mail::Mailer,
    /// This process among the nodes (`node-<uuid>`): what its claims are held under.
    pub node: Arc<str>,
    /// The SMS provider (consent codes), when one is configured.
    pub sms: crate::sms::Sms,
    /// Per-IP, per-partner and per-address limits of the sign-up routes.
    pub signup_limits: limits::SignupLimits,
    /// Identity verification: SDK tokens, provider webhooks, the sealed provider secrets.
    pub kyc: crate::kyc::Kyc,
    /// Partner webhook delivery (and the settings endpoint management checks URLs with).
    pub webhooks: crate::webhooks::Webhooks,
    /// Partners' payment providers (seed 003 step 4).
    pub payments: crate::payments::Payments,
}

impl AppState {
    pub fn new(inner: AppInner) -> Self {
        Self(Arc::new(inner))
    }

    /// The sign-up use cases, over this node's store, hashing threads and settings.
    pub fn signups(&self) -> crate::core::signup::Signups<'_> {
        crate::core::signup::Signups {
            store: &self.store,
            passwords: &self.passwords,
            settings: &self.settings.signup,
            clock: crate::domain::now_ms,
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// Every route with its OpenAPI operation. The router and `/openapi.json` are both built from the
/// handlers' `#[utoipa::path]` annotations, so the document cannot list a route that is not served
/// nor miss one that is.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .merge(ops::router())
        .merge(docs::router())
        .merge(oauth::router())
        .merge(partner::router())
        .merge(user::router())
        .merge(partner_users::router())
        .merge(prospects::router())
        .merge(consents::router())
        .merge(signup::router())
        .merge(kyc::router())
        .merge(admin::router())
        .merge(webhooks::router())
        .merge(billing::router())
}

pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The API with `pages` beside it (the staff console): they share the layers (tracing, limits,
/// panics) and the 404 of unknown paths, but are not API operations.
pub fn router_with(state: AppState, pages: Router<AppState>) -> Router {
    let max_body = state.settings.http.max_body_bytes;
    let hsts = state.settings.strict_transport_security.clone();
    let (routes, _) = api().split_for_parts();
    let routes = routes
        .merge(pages)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::layer))
        .layer(axum::middleware::from_fn_with_state(max_body, reject_oversize))
        .layer(CatchPanicLayer::custom(panic_response))
        // Outermost, so that even a panic's 500 carries the request's trace id and is logged.
        .layer(axum::middleware::from_fn(trace::observe))
        .with_state(state);
    // A layer on a router runs after its routes are matched; one on an outer router whose only
    // route is the inner one runs before, and can respell seed 001's paths as ASP.NET would match them.
    let outer =
        Router::new().fallback_service(routes).layer(tower::util::MapRequestLayer::new(aspnet::seed_001_routes));
    match hsts {
        Some(value) => outer.layer(tower::util::MapResponseLayer::new(move |mut response: Response| {
            response.headers_mut().insert(axum::http::header::STRICT_TRANSPORT_SECURITY, value.clone());
            response
        })),
        None => outer,
    }
}

/// Bodies announced larger than the limit get 413 before any handler runs. The body is read and
/// discarded first (up to a bound): closing a socket with unread data makes the kernel send a
/// reset, and the client would see a broken connection instead of the 413.
async fn reject_oversize(
    axum::extract::State(max_body): axum::extract::State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    const DRAIN_AT_MOST: usize = 64 * 1024 * 1024;
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(length) if length > max_body as u64 => {
            if length <= DRAIN_AT_MOST as u64 {
                let drain = axum::body::to_bytes(request.into_body(), DRAIN_AT_MOST);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
            }
            ApiError::PayloadTooLarge.into_response()
        }
        _ => next.run(request).await,
    }
}

pub use crate::domain::rfc3339;

async fn not_found() -> ApiError {
    ApiError::NotFound("No route matches this path.".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}
