//! Sending ended deliveries again: one at a time (redeliver), or a recovery's batch at a time. Both re-open the
//! deliveries (pending, a fresh retry budget) and queue their stored events with fresh message ids, in one
//! transaction, through the same two statements.

use crate::error::{ApiError, ApiResult};
use crate::repo::{deliveries, outbox};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use crm_db::DeliveryStatus;
use crm_events::Subjects;
use sqlx::PgConnection;
use uuid::Uuid;

/// The spellings of the statuses a delivery can be redelivered from.
pub fn ended_statuses() -> Vec<&'static str> {
    DeliveryStatus::ALL.into_iter().filter(|s| s.has_ended()).map(DeliveryStatus::as_str).collect()
}

/// Re-opens the workspace's deliveries `ids` that are still in one of `statuses` (and, with `unchanged_since`, not
/// updated after it) and queues their stored events again. Each message gets a fresh stream message id (the event
/// id would be dropped by the stream's duplicate window) and the same body, so the receiver sees the same webhook
/// id and the attempt numbers go on; the retry budget starts afresh. The relays are woken at commit. Returns the
/// ids re-queued, in the order of `ids`.
pub async fn requeue(
    tx: &mut PgConnection,
    subjects: &Subjects,
    workspace_id: Uuid,
    ids: &[Uuid],
    statuses: &[&str],
    unchanged_since: Option<DateTime<Utc>>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let reopened = deliveries::reopen(&mut *tx, workspace_id, ids, statuses, unchanged_since).await?;
    if reopened.is_empty() {
        return Ok(reopened);
    }
    let reopened: std::collections::HashSet<Uuid> = reopened.into_iter().collect();
    let queued: Vec<(Uuid, Uuid)> =
        ids.iter().filter(|id| reopened.contains(id)).map(|id| (*id, Uuid::now_v7())).collect();
    let headers = service_common::trace::current_headers();
    outbox::enqueue_redeliveries(&mut *tx, &subjects.row_changed(workspace_id), &queued, &headers).await?;
    outbox::notify(&mut *tx).await?;
    Ok(queued.into_iter().map(|(id, _)| id).collect())
}

/// Redelivers one ended delivery. 409 while it is still in progress.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id, delivery_id = %id))]
pub async fn redeliver(state: &AppState, workspace_id: Uuid, id: Uuid) -> ApiResult<()> {
    let mut tx = state.pool.begin().await?;
    let status = deliveries::lock(&mut tx, workspace_id, id).await?.ok_or(ApiError::NotFound("delivery"))?;
    if !status.has_ended() {
        return Err(ApiError::Conflict {
            field: None,
            message: "the delivery is still pending or retrying; redeliver it once it has ended".into(),
        });
    }
    requeue(&mut tx, &state.subjects, workspace_id, &[id], &ended_statuses(), None).await?;
    tx.commit().await?;
    Ok(())
}
