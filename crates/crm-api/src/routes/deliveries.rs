//! The delivery log: list, one delivery with its attempts, and redeliver.

use super::docs::{PageParams, WsIdParams, WsParam};
use crate::auth::{can, Authorized};
use crate::domain::replay::{self, Header, WebhookRequest};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::ApiQuery;
use crate::pagination;
use crate::repo::deliveries::{self, Attempt, Delivery};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use crm_db::DeliveryStatus;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A page of the delivery log.
#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    deliveries: Vec<Delivery>,
    /// Pass it back as `?cursor=` for the next page; null on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// One delivery with every attempt: `attempts` is the list here, and `attempt_count` the number (the `attempts`
/// of the list view).
#[derive(Serialize, ToSchema)]
pub struct DeliveryDetail {
    /// The event id: also the webhook id the receiver sees, the same on every attempt and redelivery.
    id: Uuid,
    #[schema(value_type = super::docs::EventTypeSchema)]
    event_type: String,
    #[schema(required = true)]
    row_id: Option<Uuid>,
    #[schema(value_type = super::docs::DeliveryStatusSchema)]
    status: String,
    /// Every attempt, oldest first, with the headers it sent.
    attempts: Vec<AttemptDetail>,
    /// The number of attempts.
    #[schema(minimum = 0)]
    attempt_count: i32,
    #[schema(required = true)]
    last_status_code: Option<i32>,
    #[schema(required = true)]
    last_error: Option<String>,
    #[serde(serialize_with = "crate::json::timestamp")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    #[schema(required = true)]
    delivered_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    #[schema(required = true)]
    next_attempt_at: Option<DateTime<Utc>>,
    /// The request every attempt sends (the same body each time); null if the stored event cannot be read.
    #[schema(required = true)]
    request: Option<WebhookRequest>,
}

/// One attempt, with what the receiver got.
#[derive(Serialize, ToSchema)]
pub struct AttemptDetail {
    #[serde(flatten)]
    attempt: Attempt,
    /// The headers the receiver got, in order, with the signatures elided (`sha256=<elided>`, `v1,<elided>`): they
    /// are never computed outside the worker. The timestamps are the attempt's start, in Unix seconds.
    request_headers: Vec<Header>,
}

/// A redelivery queued.
#[derive(Serialize, ToSchema)]
pub struct RedeliveryQueued {
    delivery_id: Uuid,
}

/// List deliveries
///
/// The delivery log, newest first.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/crm-webhook/deliveries", tag = "deliveries",
    operation_id = "listDeliveries",
    params(WsParam, PageParams, ("status" = Option<super::docs::DeliveryStatusSchema>, Query,
        description = "Only deliveries with this status (absent or empty: every status); an unknown status is 422 \
            naming `status`.")),
    responses((status = 200, description = "A page of deliveries.", body = DeliveryList),
        (status = 422, response = super::docs::ValidationFailed)))]
pub async fn list(
    caller: Authorized<can::ReadDeliveries>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery,
) -> ApiResult<Json<DeliveryList>> {
    let mut errors = Vec::new();
    let status = match query.get("status").filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => raw
            .parse::<DeliveryStatus>()
            .map_err(|_| {
                errors.push(FieldError::new("status", format!("must be one of {}", DeliveryStatus::spellings())))
            })
            .ok(),
    };
    let page = pagination::params(&query, errors)?;
    let found = deliveries::list(&state.pool, caller.workspace_id, status, page.after, page.limit + 1).await?;
    let (deliveries, next_cursor) = pagination::page(found, page.limit, |d| d.id);
    Ok(Json(DeliveryList { deliveries, next_cursor }))
}

/// One delivery with its attempts
///
/// The delivery and every attempt, oldest first; `attempts` is the list here and `attempt_count` the number. With
/// them, what the receiver got: `request` (method, the webhook's URL as configured now, and the body every attempt
/// sends) and each attempt's `request_headers`, signatures elided; the answer is each attempt's `status_code`,
/// `duration_ms` and `response_excerpt`.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/crm-webhook/deliveries/{id}", tag = "deliveries",
    operation_id = "getDelivery", params(WsIdParams),
    responses((status = 200, description = "The delivery.", body = DeliveryDetail)))]
pub async fn get(
    caller: Authorized<can::ReadDeliveries>,
    State(state): State<AppState>,
) -> ApiResult<Json<DeliveryDetail>> {
    let mut conn = state.pool.acquire().await?;
    let (d, attempts) =
        deliveries::get(&mut conn, caller.workspace_id, caller.id()?).await?.ok_or(ApiError::NotFound("delivery"))?;
    let event = deliveries::event(&mut *conn, d.id).await?;
    let url = crate::repo::settings::get(&mut *conn, caller.workspace_id).await?.url;
    let attempts = attempts
        .into_iter()
        .map(|a| AttemptDetail {
            request_headers: replay::attempt_headers(d.id, &d.event_type, a.attempt, a.started_at),
            attempt: a,
        })
        .collect();
    Ok(Json(DeliveryDetail {
        request: event.and_then(|event| replay::request(&event, url)),
        id: d.id,
        event_type: d.event_type,
        row_id: d.row_id,
        status: d.status,
        attempts,
        attempt_count: d.attempts,
        last_status_code: d.last_status_code,
        last_error: d.last_error,
        created_at: d.created_at,
        delivered_at: d.delivered_at,
        next_attempt_at: d.next_attempt_at,
    }))
}

/// Redeliver an ended delivery
///
/// Sends the same event again: the same body and webhook id, with attempt numbers continuing from the last one
/// and a fresh retry budget. Only a delivery that has ended (`succeeded`, `failed`, `dead`, `skipped`) can be
/// redelivered; one still `pending` or `retrying` is 409. The delivery goes back to `pending`. No request body.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/crm-webhook/deliveries/{id}/redeliver", tag = "deliveries",
    operation_id = "redeliver", params(WsIdParams),
    responses((status = 202, description = "Queued.", body = RedeliveryQueued),
        (status = 409, response = super::docs::Conflict)))]
pub async fn redeliver(
    caller: Authorized<can::Redeliver>,
    State(state): State<AppState>,
) -> ApiResult<(StatusCode, Json<RedeliveryQueued>)> {
    let id = caller.id()?;
    crate::service::deliveries::redeliver(&state, caller.workspace_id, id).await?;
    Ok((StatusCode::ACCEPTED, Json(RedeliveryQueued { delivery_id: id })))
}
