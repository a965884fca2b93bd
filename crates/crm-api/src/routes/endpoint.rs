//! The workspace's webhook endpoint as the workers see it, and resuming it now.

use super::docs::WsParam;
use crate::auth::{can, Authorized};
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// A webhook endpoint's health.
#[derive(Serialize, ToSchema)]
pub struct EndpointHealthView {
    state: crate::domain::health::EndpointHealth,
    /// Workers sending to it now (each keeps its own adaptive limit for it).
    workers: i64,
    /// The requests it may have in flight now, summed over those workers: it grows while the endpoint answers
    /// quickly and shrinks on timeouts, errors and slow answers. Null while no worker sends to it.
    #[schema(required = true)]
    concurrency_limit: Option<i64>,
    in_flight: i64,
    /// Deliveries waiting in the workers for a free slot (or for the rate cap).
    queued: i64,
    /// While paused: until when (the longest of the workers' pauses).
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    #[schema(required = true)]
    paused_until: Option<DateTime<Utc>>,
    /// When a worker's limit for it last changed.
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    #[schema(required = true)]
    limit_changed_at: Option<DateTime<Utc>>,
    /// Why the system turned the webhook off, while it is off.
    #[schema(required = true)]
    disabled_reason: Option<String>,
    /// The webhook's rate cap, if any.
    #[schema(required = true)]
    max_per_second: Option<f64>,
}

/// The webhook endpoint's health
///
/// What the workers see of the workspace's endpoint right now: healthy, limited (work waits for its concurrency
/// limit or rate cap), paused (by the breaker after repeated failures, or a `Retry-After`, until `paused_until`),
/// disabled (after 410 Gone, with the reason), or idle (no worker is sending to it). Workers report every two
/// seconds; a report older than 15 seconds is not counted.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/crm-webhook/health", tag = "deliveries",
    operation_id = "getEndpointHealth", params(WsParam),
    responses((status = 200, description = "The endpoint's health.", body = EndpointHealthView)))]
pub async fn health(
    caller: Authorized<can::ReadDeliveries>,
    State(state): State<AppState>,
) -> ApiResult<Json<EndpointHealthView>> {
    let settings = crate::repo::settings::get(&state.pool, caller.workspace_id).await?;
    let report = crate::repo::endpoint::report(&state.pool, caller.workspace_id).await?;
    Ok(Json(EndpointHealthView {
        state: crate::domain::health::health(crate::domain::health::Signals {
            turned_off: !settings.enabled && settings.disabled_reason.is_some(),
            paused: report.paused,
            limited: report.limited,
            workers: report.workers,
        }),
        workers: report.workers,
        concurrency_limit: report.concurrency_limit,
        in_flight: report.in_flight,
        queued: report.queued,
        paused_until: report.paused_until,
        limit_changed_at: report.limit_changed_at,
        disabled_reason: if settings.enabled { None } else { settings.disabled_reason },
        max_per_second: settings.max_per_second,
    }))
}

/// What a resume did.
#[derive(Serialize, ToSchema)]
pub struct Resumed {
    /// Whether the webhook, which the system had turned off (after 410 Gone), was turned back on.
    reenabled: bool,
}

/// Resume the endpoint now
///
/// For an endpoint the workers paused (their breaker after repeated failures, or a `Retry-After`): every worker
/// lifts its pause at once, so the next delivery goes now rather than when the pause runs out (if it fails again,
/// the breaker counts afresh). For a webhook the system turned off (after 410 Gone; `disabled_reason` says why):
/// it is turned back on and the reason cleared, as saving the settings enabled would. A webhook a person switched
/// off stays off. Always 202: resuming an endpoint that is neither paused nor disabled changes nothing. Deliveries
/// waiting out a retry delay keep their delay. No request body.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/crm-webhook/health/resume", tag = "deliveries",
    operation_id = "resumeEndpoint", params(WsParam),
    responses((status = 202, description = "The workers were told; the health route shows the result within a few \
        seconds.", body = Resumed)))]
pub async fn resume(
    caller: Authorized<can::ResumeEndpoint>,
    State(state): State<AppState>,
) -> ApiResult<(StatusCode, Json<Resumed>)> {
    let reenabled = crate::service::endpoint::resume(&state, caller.workspace_id).await?;
    Ok((StatusCode::ACCEPTED, Json(Resumed { reenabled })))
}
