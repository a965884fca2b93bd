//! The operator's writes: workspaces, and tokens that are created once and revoked at once.

use crate::auth::{generate_token, Role};
use crate::error::{ApiError, ApiResult};
use crate::repo::workspaces::{self, Workspace};
use crate::state::AppState;
use uuid::Uuid;

/// A new token, as its one and only response shows it.
pub struct CreatedToken {
    pub id: Uuid,
    pub plaintext: String,
}

pub async fn create_workspace(state: &AppState, name: &str) -> ApiResult<Workspace> {
    Ok(workspaces::create(&state.pool, name).await?)
}

/// Creates a token of `role`; only its hash is stored.
pub async fn create_token(state: &AppState, workspace_id: Uuid, role: Role, name: &str) -> ApiResult<CreatedToken> {
    if !workspaces::exists(&state.pool, workspace_id).await? {
        return Err(ApiError::NotFound("workspace"));
    }
    let token = generate_token();
    let id = workspaces::create_token(&state.pool, workspace_id, role, name, &token.hash).await?;
    Ok(CreatedToken { id, plaintext: token.plaintext })
}

/// Revokes a token. It stops working at once: this replica drops it from its cache, and the answer waits until
/// this replica has heard its own revocation notification, which PostgreSQL delivers to every replica's listener
/// at the same moment.
pub async fn revoke_token(state: &AppState, workspace_id: Uuid, id: Uuid) -> ApiResult<()> {
    // Listen before the revocation commits, so its notification cannot slip past.
    let watch = state.tokens.watch();
    let hash = workspaces::delete_token(&state.pool, workspace_id, id).await?.ok_or(ApiError::NotFound("token"))?;
    state.tokens.remove(&hash);
    if !watch.heard(&hash).await {
        tracing::warn!("revocation notification not heard in time; other replicas drop the token on reconnect");
    }
    Ok(())
}
