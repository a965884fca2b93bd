//! Bulk recovery: start one, follow it, list them.

use super::docs::{PageParams, WsIdParams, WsParam};
use crate::auth::{can, Authorized};
use crate::domain::recovery::RecoveryBody;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_json, ApiQuery, JsonBytes};
use crate::pagination;
use crate::repo::recoveries::{self, Recovery};
use crate::service::recoveries::Started;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// A page of recoveries.
#[derive(Serialize, ToSchema)]
pub struct RecoveryList {
    /// Newest first.
    recoveries: Vec<Recovery>,
    /// Pass it back as `?cursor=` for the next page; null on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// Recover deliveries in bulk
///
/// Sends every matched delivery of the workspace again through the pipeline: the deliveries created at or after
/// `since` (at most 30 days back) whose status is one of `statuses` (default `failed` and `dead`) when the recovery
/// starts. Each is re-opened (`pending`, a fresh retry budget) and its stored event queued again: the receiver
/// sees the same webhook id with new attempt numbers. Deliveries still `pending` or `retrying` are never re-queued.
///
/// The answer comes at once with the number matched; the deliveries are re-queued in the background, a batch at
/// a time and only while live traffic leaves room (`queued` grows until `status` is `completed`), and the work
/// survives a crm-api restart. One recovery runs per workspace: the same request (the same `since` instant and
/// the same set of statuses) while it runs answers 202 with the running recovery and queues nothing new; a
/// different one is 409 until it completes. 409 too while the webhook is not enabled. The `Location` header names
/// the recovery.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/crm-webhook/recoveries", tag = "deliveries",
    operation_id = "startRecovery", params(WsParam), request_body = RecoveryBody,
    responses((status = 202, description = "Started, or the same recovery already running.", body = Recovery,
            headers(("Location" = String, description = "The recovery's URL."))),
        (status = 409, response = super::docs::Conflict)))]
pub async fn start(
    caller: Authorized<can::RecoverDeliveries>,
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Response> {
    let request = parse_json::<RecoveryBody>(&body)?.validate(chrono::Utc::now())?;
    let recovery = match crate::service::recoveries::start(&state, caller.workspace_id, request).await? {
        Started::Created(r) | Started::AlreadyRunning(r) => r,
    };
    let location = format!("/v1/workspaces/{}/crm-webhook/recoveries/{}", caller.workspace_id, recovery.id);
    let mut response = (StatusCode::ACCEPTED, Json(recovery)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// One recovery, with its progress
///
/// `queued` of `matched` deliveries re-queued so far; `status` is `completed` once every matched delivery has been
/// reached.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/crm-webhook/recoveries/{id}", tag = "deliveries",
    operation_id = "getRecovery", params(WsIdParams),
    responses((status = 200, description = "The recovery.", body = Recovery)))]
pub async fn get(caller: Authorized<can::ReadDeliveries>, State(state): State<AppState>) -> ApiResult<Json<Recovery>> {
    let recovery = recoveries::get(&state.pool, caller.workspace_id, caller.id()?).await?;
    Ok(Json(recovery.ok_or(ApiError::NotFound("recovery"))?))
}

/// List recoveries
///
/// The workspace's recoveries, newest first; a running one, if any, is first.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/crm-webhook/recoveries", tag = "deliveries",
    operation_id = "listRecoveries", params(WsParam, PageParams),
    responses((status = 200, description = "A page of recoveries.", body = RecoveryList),
        (status = 422, response = super::docs::ValidationFailed)))]
pub async fn list(
    caller: Authorized<can::ReadDeliveries>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery,
) -> ApiResult<Json<RecoveryList>> {
    let page = pagination::params(&query, Vec::new())?;
    let found = recoveries::list(&state.pool, caller.workspace_id, page.after, page.limit + 1).await?;
    let (recoveries, next_cursor) = pagination::page(found, page.limit, |r| r.id);
    Ok(Json(RecoveryList { recoveries, next_cursor }))
}
