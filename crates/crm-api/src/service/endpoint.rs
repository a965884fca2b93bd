//! Resuming a workspace's endpoint now, rather than when its pause runs out.

use crate::error::ApiResult;
use crate::repo::{endpoint, settings};
use crate::state::AppState;
use uuid::Uuid;

/// Turns a webhook the system disabled (after 410 Gone) back on, and tells every worker to lift its pause of the
/// endpoint (the breaker's, or a `Retry-After` hold), in one transaction: both take effect at its commit. Returns
/// whether the webhook was turned back on.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn resume(state: &AppState, workspace_id: Uuid) -> ApiResult<bool> {
    let mut tx = state.pool.begin().await?;
    let reenabled = settings::reenable(&mut tx, workspace_id).await?;
    endpoint::notify_resume(&mut tx, workspace_id).await?;
    tx.commit().await?;
    tracing::info!(reenabled, "endpoint resumed");
    Ok(reenabled)
}
