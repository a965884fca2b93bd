//! SQL of workspaces and their tokens.

use crate::auth::Role;
use chrono::{DateTime, Utc};
use crm_db::Channel;
use sqlx::PgExecutor;
use uuid::Uuid;

/// A workspace: the tenant every row, setting, token and delivery belongs to.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    #[serde(serialize_with = "crate::json::timestamp")]
    pub created_at: DateTime<Utc>,
}

/// A workspace as the admin list shows it: never a secret, never a full URL.
#[derive(Debug, Clone)]
pub struct WorkspaceSummary {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub webhook_enabled: bool,
    pub webhook_url: Option<String>,
    pub secret_set: bool,
}

pub struct TokenOwner {
    pub workspace_id: Uuid,
    pub role: Role,
}

#[tracing::instrument(skip(db))]
pub async fn create(db: impl PgExecutor<'_>, name: &str) -> Result<Workspace, sqlx::Error> {
    sqlx::query_as!(
        Workspace,
        "INSERT INTO workspaces (id, name) VALUES ($1, $2) RETURNING id, name, created_at",
        Uuid::now_v7(),
        name
    )
    .fetch_one(db)
    .await
}

#[tracing::instrument(skip(db))]
pub async fn exists(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM workspaces WHERE id = $1) AS "exists!""#, id)
        .fetch_one(db)
        .await
}

#[tracing::instrument(skip(db))]
pub async fn list(
    db: impl PgExecutor<'_>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<WorkspaceSummary>, sqlx::Error> {
    sqlx::query_as!(
        WorkspaceSummary,
        r#"SELECT w.id, w.name, w.created_at, coalesce(s.enabled, false) AS "webhook_enabled!",
                  s.url AS "webhook_url?", (s.secret_sealed IS NOT NULL) AS "secret_set!"
             FROM workspaces w LEFT JOIN webhook_settings s ON s.workspace_id = w.id
            WHERE ($1::uuid IS NULL OR w.id > $1)
            ORDER BY w.id
            LIMIT $2"#,
        after,
        limit
    )
    .fetch_all(db)
    .await
}

#[tracing::instrument(skip(db, hash))]
pub async fn create_token(
    db: impl PgExecutor<'_>,
    workspace_id: Uuid,
    role: Role,
    name: &str,
    hash: &[u8; 32],
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO api_tokens (id, workspace_id, role, name, token_hash) VALUES ($1, $2, $3, $4, $5)",
        id,
        workspace_id,
        role.as_str(),
        name,
        &hash[..]
    )
    .execute(db)
    .await?;
    Ok(id)
}

/// Deletes a token and tells every replica to forget it (`NOTIFY` on [`Channel::Tokens`] at commit). Returns its
/// hash, or `None` when the workspace has no such token.
#[tracing::instrument(skip(db))]
pub async fn delete_token(
    db: impl PgExecutor<'_>,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar!(
        "WITH gone AS (DELETE FROM api_tokens WHERE id = $1 AND workspace_id = $2 RETURNING token_hash)
         SELECT token_hash FROM gone, LATERAL (SELECT pg_notify($3, encode(token_hash, 'hex'))) n",
        id,
        workspace_id,
        Channel::Tokens.name()
    )
    .fetch_optional(db)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn token_by_hash(db: impl PgExecutor<'_>, hash: &[u8; 32]) -> Result<Option<TokenOwner>, sqlx::Error> {
    let row = sqlx::query!("SELECT workspace_id, role FROM api_tokens WHERE token_hash = $1", &hash[..])
        .fetch_optional(db)
        .await?;
    // The table's CHECK constraint admits only known roles.
    Ok(row.and_then(|r| Some(TokenOwner { workspace_id: r.workspace_id, role: r.role.parse().ok()? })))
}
