//! `/admin/outbox/*`: the events the relay set aside because they cannot be published, for the operator to see
//! and re-drive once the cause is fixed (for example after raising the stream server's `max_payload`).

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::ApiQuery;
use crate::pagination;
use crate::repo::outbox;
use crate::state::AppState;
use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

/// `GET /admin/outbox/parked?limit&cursor`: parked events, oldest first, without their payloads (the cursor is
/// the last `seq` seen).
pub async fn list_parked(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery,
) -> ApiResult<impl IntoResponse> {
    let mut errors = Vec::new();
    let limit = pagination::limit(query.get("limit").map(String::as_str)).map_err(|e| errors.push(e)).unwrap_or(1);
    let after = match query.get("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(raw) => raw
            .parse::<i64>()
            .map_err(|_| errors.push(FieldError::new("cursor", "is not a cursor this API returned")))
            .unwrap_or(0),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut found = outbox::list_parked(&state.pool, after, limit + 1).await?;
    let next = if found.len() as i64 > limit {
        found.truncate(limit as usize);
        found.last().map(|p| p.seq.to_string())
    } else {
        None
    };
    Ok(Json(json!({"parked": found, "next_cursor": next})))
}

/// The `{seq}` path parameter; anything but a positive integer is "not found".
pub struct Seq(i64);

impl<S: Send + Sync> FromRequestParts<S> for Seq {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state).await.map_err(|_| ApiError::NotFound("event"))?;
        params
            .iter()
            .find(|(name, _)| *name == "seq")
            .and_then(|(_, value)| value.parse::<i64>().ok())
            .filter(|seq| *seq > 0)
            .map(Seq)
            .ok_or(ApiError::NotFound("event"))
    }
}

/// `POST /admin/outbox/parked/{seq}/redrive`: back into the outbox, for the relay to try again. 202; 404 when no
/// such event is parked.
pub async fn redrive(_: Admin, Seq(seq): Seq, State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    if !outbox::redrive(&state.pool, seq).await? {
        return Err(ApiError::NotFound("event"));
    }
    tracing::info!(seq, "parked outbox event re-driven");
    Ok((StatusCode::ACCEPTED, Json(json!({"seq": seq, "requeued": true}))))
}
