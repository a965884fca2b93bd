//! Delivery statistics for the console's charts, aggregated in SQL.

use super::docs::WsParam;
use crate::auth::{can, Authorized};
use crate::domain::ids::first_id_at;
use crate::domain::stats::{self, StatsBucket, StatsWindow, StatusCounts};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::repo::stats::{self as sql, Percentiles, Window};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Percentiles of durations in milliseconds (`percentile_cont`, interpolated); null when `count` is 0.
#[derive(Serialize, ToSchema)]
pub struct LatencyPercentiles {
    /// How many durations they are taken over.
    count: i64,
    #[schema(required = true)]
    p50: Option<f64>,
    #[schema(required = true)]
    p90: Option<f64>,
    #[schema(required = true)]
    p99: Option<f64>,
}

impl From<Percentiles> for LatencyPercentiles {
    fn from(p: Percentiles) -> Self {
        LatencyPercentiles { count: p.count, p50: p.p50, p90: p.p90, p99: p.p99 }
    }
}

/// The window's latencies.
#[derive(Serialize, ToSchema)]
pub struct WindowLatency {
    /// How long the receiver took to answer an attempt (request sent to answer read, or the timeout): every attempt
    /// started in the window, of the deliveries created in it.
    attempt_ms: LatencyPercentiles,
    /// From a delivery's creation (its row change's commit) to the receiver's 2xx, retries and waiting included:
    /// the deliveries created in the window that have succeeded.
    delivery_ms: LatencyPercentiles,
}

/// The workspace's deliveries over a window.
#[derive(Serialize, ToSchema)]
pub struct DeliveryStats {
    window: StatsWindow,
    /// The length of each bucket: 60 (`1h`) or 900 (`24h`).
    bucket_seconds: i64,
    #[serde(serialize_with = "crate::json::timestamp")]
    from: DateTime<Utc>,
    /// The end of the last bucket, which holds now and is still filling.
    #[serde(serialize_with = "crate::json::timestamp")]
    to: DateTime<Utc>,
    /// Every bucket of the window, oldest first, empty ones included.
    buckets: Vec<StatsBucket>,
    /// The deliveries created in the window, by their status now.
    totals: StatusCounts,
    latency: WindowLatency,
}

/// Delivery statistics
///
/// The workspace's deliveries created in the last hour (`window=1h`, 60 one-minute buckets) or day (`window=24h`,
/// 96 buckets of 15 minutes), counted per bucket by their status now (so a delivery that failed twice and then
/// succeeded counts once, as `succeeded`, in the bucket it was created in), with the median and 99th percentile
/// of the attempt durations per bucket, and, over the window, percentiles of the attempt durations and of the
/// time from a delivery's creation to its success. Aggregated in PostgreSQL over the window's deliveries (an id
/// range of the delivery log's index), never by paging the log.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/crm-webhook/stats", tag = "deliveries",
    operation_id = "getDeliveryStats",
    params(WsParam, ("window" = Option<StatsWindow>, Query,
        description = "`1h` (default) or `24h`; anything else is 422 naming `window`.")),
    responses((status = 200, description = "The statistics.", body = DeliveryStats),
        (status = 422, response = super::docs::ValidationFailed)))]
pub async fn get(
    caller: Authorized<can::ReadDeliveries>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery,
) -> ApiResult<Json<DeliveryStats>> {
    let window = match query.get("window").map(String::as_str).filter(|w| !w.is_empty()) {
        None => StatsWindow::Hour,
        Some(raw) => StatsWindow::parse(raw).ok_or_else(|| ApiError::field("window", "must be 1h or 24h"))?,
    };
    let mut conn = state.pool.acquire().await?;
    // The database's clock, the one that wrote the deliveries' times.
    let now = crate::repo::now(&mut *conn).await?;
    let (from, to) = window.bounds(now);
    let w = Window { from, first_id: first_id_at(from), bucket_secs: window.bucket().num_seconds() as f64 };
    let ws = caller.workspace_id;
    let counts = sql::status_counts(&mut *conn, ws, &w).await?;
    let latencies = sql::attempt_latency_by_bucket(&mut *conn, ws, &w).await?;
    let (attempt_ms, delivery_ms) = sql::latency(&mut *conn, ws, &w).await?;
    let (buckets, totals) = stats::fill(
        window,
        from,
        counts.into_iter().map(|c| (c.bucket, c.status, c.count)),
        latencies.into_iter().map(|l| (l.bucket, l.p50, l.p99)),
    );
    Ok(Json(DeliveryStats {
        window,
        bucket_seconds: window.bucket().num_seconds(),
        from,
        to,
        buckets,
        totals,
        latency: WindowLatency { attempt_ms: attempt_ms.into(), delivery_ms: delivery_ms.into() },
    }))
}
