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
use axum::Json;

/// A page of parked events.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = ParkedEventList)]
pub struct ParkedList {
    /// Oldest first.
    parked: Vec<outbox::Parked>,
    /// The last `seq` of this page, to pass back as `?cursor=`; null on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// A parked event queued again.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = ParkedEventRequeued)]
pub struct Requeued {
    seq: i64,
    /// Always true.
    requeued: bool,
}

/// `?limit=&cursor=` of the parked list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ParkedPage {
    /// Page size, 1 to 200; absent or empty: 50.
    #[param(value_type = Option<String>, pattern = "^([1-9][0-9]?|1[0-9]{2}|200)?$")]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page (a `seq`).
    cursor: Option<String>,
}

/// `{seq}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SeqParam {
    /// A parked event's outbox sequence number.
    #[param(minimum = 1)]
    seq: i64,
}

/// List outbox events that cannot be published
///
/// Events the relay set aside, oldest first, with the reason (today: larger than the stream server's
/// `max_payload`). They never block the events behind them. Their payloads are not shown: they carry a person's
/// row. The `crm_outbox_parked` gauge and `crm_outbox_parked_events_total` counter show them too.
#[utoipa::path(get, path = "/admin/outbox/parked", tag = "admin", operation_id = "listParkedEvents",
    params(ParkedPage), responses((status = 200, description = "Parked events.", body = ParkedList),
        (status = 422, response = super::docs::ValidationFailed)))]
pub async fn list_parked(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery,
) -> ApiResult<Json<ParkedList>> {
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
    Ok(Json(ParkedList { parked: found, next_cursor: next }))
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

/// Send a parked event again
///
/// Moves the event back into the outbox; the relay publishes it with its own message id (so the stream stores it
/// once), or parks it again if the cause remains. Fix the cause first (for example raise the server's
/// `max_payload`). No request body.
#[utoipa::path(post, path = "/admin/outbox/parked/{seq}/redrive", tag = "admin", operation_id = "redriveParkedEvent",
    params(SeqParam), responses((status = 202, description = "Queued again.", body = Requeued)))]
pub async fn redrive(
    _: Admin,
    Seq(seq): Seq,
    State(state): State<AppState>,
) -> ApiResult<(StatusCode, Json<Requeued>)> {
    if !outbox::redrive(&state.pool, seq).await? {
        return Err(ApiError::NotFound("event"));
    }
    tracing::info!(seq, "parked outbox event re-driven");
    Ok((StatusCode::ACCEPTED, Json(Requeued { seq, requeued: true })))
}
