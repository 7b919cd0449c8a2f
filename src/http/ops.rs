//! Operator endpoints: liveness, readiness and Prometheus metrics.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(render_metrics))
}

/// The process-wide Prometheus recorder; installed once, shared by every app in the process.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                )
                .expect("bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full("db_batch_rows".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed, e.g. by an embedding program.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics shows only its own data");
            }
            handle
        })
        .clone()
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when the process answers.
    status: &'static str,
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "Operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// `ready`, or `degraded` while no sanctions list is loaded (the node serves, but
    /// registrations wait in `UpgradeInProgress` for their screening).
    status: &'static str,
    database: &'static str,
    migrations: &'static str,
    /// `loaded` or `missing`.
    sanctions: &'static str,
    /// The newest list version this node screens with (`/admin/sanctions/lists` shows each).
    #[serde(skip_serializing_if = "Option::is_none")]
    sanctions_list_version: Option<i64>,
}

/// Readiness: the database answers and every migration of this binary has been applied (else
/// 503); the body also says whether a sanctions list is loaded. A missing list does not fail
/// readiness: every node would then leave the load balancer, and the routes that do not screen
/// would go down with it.
#[utoipa::path(get, path = "/readyz", tag = "Operations", responses(
    (status = 200, body = Readiness),
    (status = 503, description = "Not ready", body = super::error::Problem, content_type = "application/problem+json"),
))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let unavailable = |detail| ApiError::Unavailable { detail, retry_after_secs: 1 };
    if state.store.ping().await.is_err() {
        return Err(unavailable("The database is not reachable."));
    }
    if !matches!(state.store.migrations_current().await, Ok(true)) {
        return Err(unavailable("Database migrations are not current."));
    }
    let list = state.sanctions.current().iter().map(|loaded| loaded.version.id).max();
    Ok(Json(Readiness {
        status: if list.is_some() { "ready" } else { "degraded" },
        database: "ok",
        migrations: "current",
        sanctions: if list.is_some() { "loaded" } else { "missing" },
        sanctions_list_version: list,
    }))
}

/// Prometheus text exposition of request, database-pool and domain metrics.
#[utoipa::path(get, path = "/metrics", tag = "Operations", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (open, idle) = state.store.pool_stats();
    metrics::gauge!("db_pool_connections", "state" => "open").set(f64::from(open));
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle as f64);
    state.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}
