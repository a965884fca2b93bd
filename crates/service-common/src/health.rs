//! `/healthz`, `/readyz` and `/metrics`, served the same way by both services (docs/contract.md §1). Metrics are in the
//! OpenMetrics text format, which Prometheus scrapes natively, with its own content type.

use crate::metrics::MetricsRegistry;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::{Json, Router};
use serde::Serialize;
use sqlx::PgPool;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// What readiness depends on.
#[derive(Clone)]
pub struct Readiness {
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub metrics: MetricsRegistry,
}

/// The three operational routes.
pub fn router(readiness: Readiness) -> Router {
    openapi_router(readiness).into()
}

/// The three operational routes with their OpenAPI description, for a service that serves an OpenAPI document.
pub fn openapi_router(readiness: Readiness) -> OpenApiRouter {
    openapi_routes().with_state(readiness)
}

/// [`openapi_router`] before it is given its state: what to document.
pub fn openapi_routes() -> OpenApiRouter<Readiness> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

/// `{"status": "ok"}`.
#[derive(Serialize, ToSchema)]
#[schema(as = Health)]
struct Alive {
    /// Always `ok`.
    #[schema(pattern = "^ok$")]
    status: &'static str,
}

/// Whether the service can do its work, and if not, which dependency is away.
#[derive(Serialize, ToSchema)]
#[schema(as = Readiness)]
struct ReadinessReport {
    /// `ready` or `not ready`.
    #[schema(pattern = "^(ready|not ready)$")]
    status: &'static str,
    checks: Checks,
}

#[derive(Serialize, ToSchema)]
struct Checks {
    /// `ok` or `unreachable`: PostgreSQL answered `SELECT 1` within 2 s.
    #[schema(pattern = "^(ok|unreachable)$")]
    postgres: &'static str,
    /// `ok` or `unreachable`: the NATS connection is up.
    #[schema(pattern = "^(ok|unreachable)$")]
    nats: &'static str,
}

/// Liveness
///
/// 200 while the process is alive. No authentication.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "Alive.", body = Alive)))]
async fn healthz() -> impl IntoResponse {
    Json(Alive { status: "ok" })
}

/// Readiness
///
/// 200 when PostgreSQL answers (within 2 s) and the NATS connection is up; 503 otherwise. No authentication.
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz", responses(
    (status = 200, description = "Ready.", body = ReadinessReport),
    (status = 503, description = "Not ready; `checks` says which dependency is unreachable.", body = ReadinessReport),
))]
async fn readyz(State(r): State<Readiness>) -> impl IntoResponse {
    let db = matches!(
        tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(&r.pool)).await,
        Ok(Ok(_))
    );
    let nats = r.nats.connection_state() == async_nats::connection::State::Connected;
    let status = if db && nats { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let state = |ok: bool| if ok { "ok" } else { "unreachable" };
    let report = ReadinessReport {
        status: if status == StatusCode::OK { "ready" } else { "not ready" },
        checks: Checks { postgres: state(db), nats: state(nats) },
    };
    (status, Json(report))
}

/// The OpenMetrics content type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prometheus metrics
///
/// OpenMetrics text format, which Prometheus scrapes natively. No authentication.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Metrics.", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
async fn metrics(State(r): State<Readiness>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], r.metrics.render())
}
