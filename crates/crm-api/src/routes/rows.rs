//! CRM rows: the interest upsert, the list, one row, and the sheet's cell edit.

use super::docs::{CrmRowSchema, InterestRequestSchema, PageParams, RowList, RowPatchSchema, WsIdParams, WsParam};
use crate::auth::{can, Authorized};
use crate::domain::{etag, IfMatch, InterestBody, RowPatch};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{parse_json, ApiQuery, JsonBytes};
use crate::pagination;
use crate::repo::rows::{self, ListFilter};
use crate::service::rows::{IdempotencyKey, InterestOutcome, PatchOutcome};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crm_mapping::CrmRow;
use serde_json::json;

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A row with its `ETag`.
fn row_response(status: StatusCode, row: &CrmRow) -> Response {
    // What `Json(row)` sends, serialised into a buffer sized for a row.
    let body = crm_mapping::json_bytes(row);
    let json = HeaderValue::from_static("application/json");
    let mut response = (status, [(header::CONTENT_TYPE, json)], body).into_response();
    if let Ok(tag) = HeaderValue::from_str(&etag(row.version)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

fn idempotency_key(headers: &HeaderMap, body: &[u8]) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match raw.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(IdempotencyKey { key: key.to_owned(), request_hash: crate::repo::idempotency::request_hash(body) }))
        }
        _ => Err(ApiError::field("Idempotency-Key", "must be 1 to 255 visible ASCII characters")),
    }
}

/// Record a lead's interest (upsert)
///
/// The lead-interest upsert used by inbound pipelines. Finds the lead's row by `lead.email` (case-insensitively)
/// or creates it.
///
/// - **Created** (201): a new row with `version` 1, `pipeline_stage` `new`, `interest_count` 1 and the given
///   contact fields, campaign and interest; emits `crm_row.created` (trigger `lead_interest`, empty
///   `changed_fields`).
/// - **Updated** (200): the interest fields are replaced by this interest, `interest_count` grows by one, the
///   version by one; contact fields only fill fields that are empty; a given campaign replaces the current one.
///   Emits `crm_row.updated` (trigger `lead_interest`).
///
/// The row change and its event commit together. The response body is the row, with its `ETag`.
///
/// Checks in order: token (401/404), capability (403), content type (415), body (400/422), `Idempotency-Key`
/// (422).
#[utoipa::path(post, path = "/v1/workspaces/{ws}/crm/interest", tag = "crm-rows", operation_id = "recordInterest",
    params(WsParam, ("Idempotency-Key" = Option<String>, Header, max_length = 255, pattern = "^[!-~]{1,255}$",
        description = "Makes a retried request safe: 1 to 255 visible ASCII characters (0x21-0x7E), scoped to the \
            workspace and kept for 24 hours. A request with a key already used returns the first request's response \
            (status and body) with header `idempotent-replayed: true`, and changes and emits nothing. The same key \
            with a different body (byte-for-byte) is a 422 on field `Idempotency-Key`; a key of the wrong shape is a \
            422 on the same field. A request that failed stores nothing, so it can be retried with the same key.")),
    request_body = InterestRequestSchema,
    responses(
        (status = 201, description = "The row was created.", body = CrmRowSchema, headers(
            ("ETag" = String, description = "The row's version as a strong entity tag, `\"<version>\"`."))),
        (status = 200, description = "The existing row was updated (or, with `idempotent-replayed: true`, the stored \
            response of an earlier request with the same `Idempotency-Key`, with that request's status).",
            body = CrmRowSchema, headers(
                ("ETag" = String, description = "The row's version as a strong entity tag, `\"<version>\"`."),
                ("idempotent-replayed" = String, description = "`true` when this response is the stored response \
                    of an earlier request with the same `Idempotency-Key`."))),
    ))]
pub async fn record_interest(
    caller: Authorized<can::RecordInterest>,
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Response> {
    let interest = parse_json::<InterestBody>(&body)?.validate()?;
    let key = idempotency_key(&headers, &body)?;
    match crate::service::rows::record_interest(&state, caller.workspace_id, interest, key).await? {
        InterestOutcome::Written { created, row } => {
            Ok(row_response(if created { StatusCode::CREATED } else { StatusCode::OK }, &row))
        }
        InterestOutcome::Replayed { status, body } => {
            let version = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["version"].as_i64());
            let mut response = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert("idempotent-replayed", HeaderValue::from_static("true"));
            if let Some(tag) = version.and_then(|v| HeaderValue::from_str(&etag(v)).ok()) {
                h.insert(header::ETAG, tag);
            }
            Ok(response)
        }
    }
}

/// List CRM rows
///
/// The workspace's rows, newest first (by creation), optionally filtered. The first page (no `cursor`) also says how
/// many rows the filter matches in all (`total`). Every invalid query parameter is reported in one 422.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/crm/rows", tag = "crm-rows", operation_id = "listRows",
    params(WsParam, PageParams,
        ("stage" = Option<super::docs::PipelineStageSchema>, Query,
            description = "Only rows in this pipeline stage (empty means no filter). An unknown stage is a 422 on \
                `stage`."),
        ("q" = Option<String>, Query, max_length = 200, description = "Case-insensitive substring of `email`, \
            `first_name`, `last_name` or `company` (trimmed; at most 200 characters, else a 422 on `q`). `%`, `_` \
            and `\\` match literally.")),
    responses((status = 200, description = "A page of rows.", body = RowList), (status = 422, response = super::docs::ValidationFailed)))]
pub async fn list(
    caller: Authorized<can::ReadRows>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery,
) -> ApiResult<Json<serde_json::Value>> {
    let mut errors = Vec::new();
    let stage = match query.get("stage").filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => crate::domain::input::stage(raw).map_err(|m| errors.push(FieldError::new("stage", m))).ok(),
    };
    let q = query.get("q").map(|q| q.trim()).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 200) {
        errors.push(FieldError::new("q", "must be at most 200 characters"));
    }
    let page = pagination::params(&query, errors)?;
    let filter = ListFilter { before: page.after, stage, q: q.map(str::to_owned), limit: page.limit + 1 };
    let found = rows::list(&state.pool, caller.workspace_id, &filter).await?;
    // The first page only: the later ones would pay for the same count again.
    let total = match page.after {
        None => Some(rows::count(&state.pool, caller.workspace_id, &filter).await?),
        Some(_) => None,
    };
    let (items, next) = pagination::page(found, page.limit, |r| r.id);
    Ok(Json(json!({"rows": items, "next_cursor": next, "total": total})))
}

/// Get one CRM row
///
/// The row, with its `ETag`.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/crm/rows/{id}", tag = "crm-rows", operation_id = "getRow",
    params(WsIdParams),
    responses((status = 200, description = "The row.", body = CrmRowSchema, headers(
        ("ETag" = String, description = "The row's version as a strong entity tag, `\"<version>\"`; send it back \
            in `If-Match`.")))))]
pub async fn get(caller: Authorized<can::ReadRows>, State(state): State<AppState>) -> ApiResult<Response> {
    let row = rows::get(&state.pool, caller.workspace_id, caller.id()?).await?.ok_or(ApiError::NotFound("row"))?;
    Ok(row_response(StatusCode::OK, &row))
}

/// Edit a CRM row (a cell edit from the sheet)
///
/// Sets the given editable fields (see `RowPatch`). With `If-Match`, the edit applies only if the row is still at
/// that version; otherwise 412 with `current_version` and nothing changes. An effective change bumps `version` by
/// one, sets `updated_at` and emits `crm_row.updated` (trigger `crm_edit`, with `changed_fields` and their
/// `previous` values) together with the change. A patch that changes nothing returns 200 with the row as it is and
/// emits nothing. The response is the row with its `ETag`.
///
/// The body may be sent as `application/json` or `application/merge-patch+json`.
#[utoipa::path(patch, path = "/v1/workspaces/{ws}/crm/rows/{id}", tag = "crm-rows", operation_id = "patchRow",
    params(WsIdParams, ("If-Match" = Option<String>, Header, description = "Optional precondition: the row's \
        `ETag` as last seen, `\"<version>\"` (quotes included), a comma-separated list of such tags, or `*` (matches \
        any existing row). Strong comparison: weak tags (`W/\"3\"`) and unquoted or malformed values match nothing, \
        so they fail with 412 rather than being ignored. The check happens before the no-op check, so a stale tag is \
        a 412 even for a patch that would change nothing.")),
    request_body(content((RowPatchSchema = "application/json"), (RowPatchSchema = "application/merge-patch+json"))),
    responses(
        (status = 200, description = "The row after the edit (unchanged for a no-op patch).", body = CrmRowSchema,
            headers(("ETag" = String, description = "The row's version as a strong entity tag, `\"<version>\"`."))),
        (status = 409, response = super::docs::Conflict),
        (status = 412, response = super::docs::PreconditionFailed),
    ))]
pub async fn patch(
    caller: Authorized<can::EditRows>,
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Response> {
    let patch = RowPatch::parse(parse_json(&body)?)?;
    let if_match = headers.get(header::IF_MATCH).map(|v| IfMatch::parse(v.to_str().unwrap_or("")));
    match crate::service::rows::patch(&state, caller.workspace_id, caller.id()?, if_match, patch).await? {
        PatchOutcome::Unchanged(row) | PatchOutcome::Changed(row) => Ok(row_response(StatusCode::OK, &row)),
    }
}
