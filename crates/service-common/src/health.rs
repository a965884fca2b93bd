//! `/healthz`, `/readyz` and `/metrics`, served the same way by both services (docs/contract.md §1). Metrics are in the
//! OpenMetrics text format, which Prometheus scrapes natively, with its own content type.

use crate::metrics::MetricsRegistry;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;

/// What readiness depends on.
#[derive(Clone)]
pub struct Readiness {
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub metrics: MetricsRegistry,
}

/// The three operational routes.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(r): State<Readiness>) -> impl IntoResponse {
    let db = matches!(
        tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(&r.pool)).await,
        Ok(Ok(_))
    );
    let nats = r.nats.connection_state() == async_nats::connection::State::Connected;
    let status = if db && nats { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "not ready" },
            "checks": {"postgres": if db { "ok" } else { "unreachable" }, "nats": if nats { "ok" } else { "unreachable" }},
        })),
    )
}

async fn metrics(State(r): State<Readiness>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], r.metrics.render())
}
