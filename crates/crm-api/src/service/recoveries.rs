//! Starting a bulk recovery. The request only records what to recover and how many deliveries that matches; the
//! re-queueing is the background task's ([`crate::recovery`]), paced by live traffic.
//!
//! One recovery runs per workspace at a time. A request the same as the running one (the same `since` and the same
//! set of statuses) gets the running one back and queues nothing new; a different one is 409 until it completes.

use crate::domain::ids::{first_id_at, last_id_at};
use crate::domain::recovery::RecoveryRequest;
use crate::error::{ApiError, ApiResult};
use crate::repo::recoveries::{self, NewRecovery, Recovery};
use crate::repo::settings;
use crate::state::AppState;
use uuid::Uuid;

/// What became of a request.
pub enum Started {
    /// A new recovery.
    Created(Recovery),
    /// The same recovery was running already.
    AlreadyRunning(Recovery),
}

/// Starts a recovery of the workspace's deliveries (see the module's docs). 409 while the webhook is not enabled
/// (recovered deliveries would only be skipped) or while a different recovery runs.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn start(state: &AppState, workspace_id: Uuid, request: RecoveryRequest) -> ApiResult<Started> {
    // Two requests racing past the check below both try the insert; the loser finds the winner's recovery.
    for _ in 0..3 {
        let mut tx = state.pool.begin().await?;
        if let Some(running) = recoveries::running(&mut *tx, workspace_id).await? {
            if request.is_same_as(running.since, &running.statuses) {
                return Ok(Started::AlreadyRunning(running));
            }
            return Err(ApiError::Conflict {
                field: None,
                message: format!(
                    "recovery {} is still running; a workspace runs one recovery at a time (send the same request \
                     to follow it)",
                    running.id
                ),
            });
        }
        if !settings::get(&mut *tx, workspace_id).await?.enabled {
            return Err(ApiError::Conflict {
                field: None,
                message: "the webhook is not enabled: recovered deliveries would only be skipped; enable it (or \
                          resume it) first"
                    .into(),
            });
        }
        let statuses = request.status_names();
        let now = crate::repo::now(&mut *tx).await?;
        let (from, upto) = (first_id_at(request.since), last_id_at(now));
        let matched = recoveries::count_matched(&mut tx, workspace_id, &statuses, from, upto).await?;
        let new = NewRecovery {
            id: Uuid::now_v7(),
            workspace_id,
            since: request.since,
            statuses: &statuses,
            matched,
            walked_past: from,
            upto,
        };
        if let Some(created) = recoveries::create(&mut tx, &new).await? {
            tx.commit().await?;
            tracing::info!(recovery_id = %created.id, matched, "recovery started");
            state.recovery_wake.notify_one();
            return Ok(Started::Created(created));
        }
    }
    Err(ApiError::Unavailable)
}
