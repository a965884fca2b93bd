//! The delivery log: list, one delivery with its attempts, and redeliver.

use crate::auth::{can, Authorized};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::ApiQuery;
use crate::pagination;
use crate::repo::deliveries::{self, RedeliverOutcome};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use crm_db::DeliveryStatus;
use serde_json::{json, Value};

pub async fn list(
    caller: Authorized<can::ReadDeliveries>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery,
) -> ApiResult<Json<Value>> {
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
    let (items, next) = pagination::page(found, page.limit, |d| d.id);
    Ok(Json(json!({"deliveries": items, "next_cursor": next})))
}

pub async fn get(caller: Authorized<can::ReadDeliveries>, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let mut conn = state.pool.acquire().await?;
    let (delivery, attempts) =
        deliveries::get(&mut conn, caller.workspace_id, caller.id()?).await?.ok_or(ApiError::NotFound("delivery"))?;
    let mut body = serde_json::to_value(&delivery).map_err(ApiError::internal)?;
    body["attempt_count"] = body["attempts"].clone();
    body["attempts"] = serde_json::to_value(&attempts).map_err(ApiError::internal)?;
    Ok(Json(body))
}

pub async fn redeliver(
    caller: Authorized<can::Redeliver>,
    State(state): State<AppState>,
) -> ApiResult<impl IntoResponse> {
    let id = caller.id()?;
    let mut tx = state.pool.begin().await?;
    match deliveries::redeliver(&mut tx, &state.subjects, caller.workspace_id, id).await? {
        RedeliverOutcome::NotFound => Err(ApiError::NotFound("delivery")),
        RedeliverOutcome::InProgress => Err(ApiError::Conflict {
            field: None,
            message: "the delivery is still pending or retrying; redeliver it once it has ended".into(),
        }),
        RedeliverOutcome::Queued => {
            tx.commit().await?;
            Ok((StatusCode::ACCEPTED, Json(json!({"delivery_id": id}))))
        }
    }
}
