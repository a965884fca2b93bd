//! CRM rows: the interest upsert, the list, one row, and the sheet's cell edit.

use crate::auth::{can, Authorized};
use crate::domain::{InterestBody, PatchBody};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{parse_json, ApiQuery, JsonBytes};
use crate::pagination;
use crate::repo::rows::{self, etag, IfMatch, ListFilter, PatchOutcome};
use crate::repo::{idempotency, is_unique_violation};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SubsecRound, Utc};
use crm_mapping::CrmRow;
use serde_json::json;

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A row with its `ETag`.
fn row_response(status: StatusCode, row: &CrmRow) -> Response {
    let mut response = (status, Json(row)).into_response();
    if let Ok(tag) = HeaderValue::from_str(&etag(row.version)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match raw.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_owned()))
        }
        _ => Err(ApiError::field("Idempotency-Key", "must be 1 to 255 visible ASCII characters")),
    }
}

pub async fn record_interest(
    caller: Authorized<can::RecordInterest>,
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Response> {
    let interest = parse_json::<InterestBody>(&body)?.validate()?;
    let key = idempotency_key(&headers)?;
    let request_hash = idempotency::request_hash(&body);

    let now = Utc::now().trunc_subsecs(6);
    let Some(key) = key else {
        // No key: each write is one statement, atomic with its event; no transaction needed.
        let mut conn = state.pool.acquire().await?;
        let change = rows::record_interest(&mut conn, &state.subjects, caller.workspace_id, &interest, now).await?;
        let status = if change.before.is_none() { StatusCode::CREATED } else { StatusCode::OK };
        return Ok(row_response(status, &change.after));
    };
    // With a key, the key commits with the change it guards.
    let mut tx = state.pool.begin().await?;
    if let Some(stored) = idempotency::claim(&mut tx, caller.workspace_id, &key, &request_hash).await? {
        tx.rollback().await?;
        if stored.request_hash != request_hash {
            return Err(ApiError::field("Idempotency-Key", "was already used with a different request body"));
        }
        let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
        let version =
            serde_json::from_slice::<serde_json::Value>(&stored.body).ok().and_then(|v| v["version"].as_i64());
        let mut response = (status, stored.body).into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
        if let Some(tag) = version.and_then(|v| HeaderValue::from_str(&etag(v)).ok()) {
            h.insert(header::ETAG, tag);
        }
        return Ok(response);
    }
    let change = rows::record_interest(&mut tx, &state.subjects, caller.workspace_id, &interest, now).await?;
    let status = if change.before.is_none() { StatusCode::CREATED } else { StatusCode::OK };
    let body = serde_json::to_vec(&change.after).map_err(ApiError::internal)?;
    idempotency::complete(&mut tx, caller.workspace_id, &key, status.as_u16(), &body).await?;
    tx.commit().await?;
    Ok(row_response(status, &change.after))
}

pub async fn list(
    caller: Authorized<can::ReadRows>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery,
) -> ApiResult<Json<serde_json::Value>> {
    let mut errors = Vec::new();
    let stage = match query.get("stage").filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => crate::domain::stage(raw).map_err(|m| errors.push(FieldError::new("stage", m))).ok(),
    };
    let q = query.get("q").map(|q| q.trim()).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 200) {
        errors.push(FieldError::new("q", "must be at most 200 characters"));
    }
    let page = pagination::params(&query, errors)?;
    let filter = ListFilter { before: page.after, stage, q: q.map(str::to_owned), limit: page.limit + 1 };
    let found = rows::list(&state.pool, caller.workspace_id, &filter).await?;
    let (items, next) = pagination::page(found, page.limit, |r| r.id);
    Ok(Json(json!({"rows": items, "next_cursor": next})))
}

pub async fn get(caller: Authorized<can::ReadRows>, State(state): State<AppState>) -> ApiResult<Response> {
    let row = rows::get(&state.pool, caller.workspace_id, caller.id()?).await?.ok_or(ApiError::NotFound("row"))?;
    Ok(row_response(StatusCode::OK, &row))
}

pub async fn patch(
    caller: Authorized<can::EditRows>,
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Response> {
    let patch = parse_json::<PatchBody>(&body)?.validate()?;
    let if_match = headers.get(header::IF_MATCH).map(|v| IfMatch::parse(v.to_str().unwrap_or("")));
    let mut conn = state.pool.acquire().await?;
    let outcome =
        rows::apply_patch(&mut conn, &state.subjects, caller.workspace_id, caller.id()?, if_match, &patch).await;
    let outcome = match outcome {
        Err(e) if is_unique_violation(&e, "crm_rows_workspace_email_key") => {
            return Err(ApiError::Conflict {
                field: Some("email"),
                message: "another row of this workspace already has this email".into(),
            })
        }
        other => other?,
    };
    match outcome {
        PatchOutcome::NotFound => Err(ApiError::NotFound("row")),
        PatchOutcome::Invalid(field, message) => Err(ApiError::field(field, message)),
        PatchOutcome::Stale { current } => Err(ApiError::PreconditionFailed { current }),
        PatchOutcome::Unchanged(row) => Ok(row_response(StatusCode::OK, &row)),
        PatchOutcome::Changed(change) => Ok(row_response(StatusCode::OK, &change.after)),
    }
}
