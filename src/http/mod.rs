//! The HTTP server: one module per surface, merged here with the cross-cutting layers.

pub mod aspnet;
pub mod docs;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod oauth;
pub mod ops;
pub mod partner;
pub mod trace;
pub mod user;

use std::any::Any;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::KeyRing;
use crate::config::Settings;
use crate::store::Store;
use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub keys: Arc<KeyRing>,
    pub settings: Arc<Settings>,
    pub metrics: PrometheusHandle,
}

pub fn router(state: AppState) -> Router {
    let max_body = state.settings.http.max_body_bytes;
    Router::new()
        .merge(ops::router())
        .merge(docs::router())
        .merge(oauth::router())
        .merge(partner::router())
        .merge(user::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::layer))
        .layer(CatchPanicLayer::custom(panic_response))
        // Outermost, so that even a panic's 500 carries the request's trace id and is logged.
        .layer(axum::middleware::from_fn(trace::observe))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("No route matches this path.".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}
