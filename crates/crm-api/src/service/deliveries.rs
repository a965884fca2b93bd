//! Redelivering an ended delivery.

use crate::error::{ApiError, ApiResult};
use crate::repo::outbox::NewEvent;
use crate::repo::{deliveries, outbox};
use crate::state::AppState;
use uuid::Uuid;

/// Re-opens an ended delivery and queues its stored event again. The message gets a fresh stream message id (the
/// event id would be dropped by the stream's duplicate window) and the same body, so the receiver sees the same
/// webhook id and the attempt numbers go on; the retry budget starts afresh. 409 while it is still in progress.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id, delivery_id = %id))]
pub async fn redeliver(state: &AppState, workspace_id: Uuid, id: Uuid) -> ApiResult<()> {
    let mut tx = state.pool.begin().await?;
    let (status, event) = deliveries::lock(&mut tx, workspace_id, id).await?.ok_or(ApiError::NotFound("delivery"))?;
    if !status.has_ended() {
        return Err(ApiError::Conflict {
            field: None,
            message: "the delivery is still pending or retrying; redeliver it once it has ended".into(),
        });
    }
    deliveries::reopen(&mut tx, id).await?;
    let headers = service_common::trace::current_headers();
    let message = NewEvent {
        msg_id: Uuid::now_v7(),
        subject: state.subjects.row_changed(workspace_id),
        payload: event,
        headers: &headers,
    };
    outbox::enqueue(&mut tx, &message).await?;
    outbox::notify(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}
