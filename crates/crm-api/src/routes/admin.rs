//! `/admin/*`: workspaces and their tokens, for the operator holding `CRM_ADMIN_TOKEN`.

use super::docs::PageParams;
use crate::auth::{Admin, Role};
use crate::domain::admin::{CreateToken, CreateWorkspace};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, WsPath};
use crate::pagination;
use crate::repo::workspaces::{self, Workspace};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A new token, shown this once.
#[derive(Serialize, ToSchema)]
pub struct TokenCreated {
    /// The token's id, for `DELETE /admin/workspaces/{ws}/tokens/{id}`.
    id: Uuid,
    /// The bearer token: `crm_` + URL-safe base64 (no padding) of 32 random bytes. It appears in this response
    /// only; the service stores only its SHA-256.
    #[schema(pattern = "^crm_[A-Za-z0-9_-]{43}$")]
    token: String,
    role: Role,
    name: String,
}

/// A workspace as the admin list shows it: never a secret, never a full URL.
#[derive(Serialize, ToSchema)]
pub struct WorkspaceSummary {
    id: Uuid,
    name: String,
    #[serde(serialize_with = "crate::json::timestamp")]
    created_at: DateTime<Utc>,
    crm_webhook: WebhookSummary,
}

/// A workspace's webhook, summarised.
#[derive(Serialize, ToSchema)]
pub struct WebhookSummary {
    enabled: bool,
    /// Only the host of the webhook URL; null when no URL is set.
    #[schema(required = true)]
    url_host: Option<String>,
    secret_set: bool,
}

/// A page of workspaces.
#[derive(Serialize, ToSchema)]
pub struct WorkspaceList {
    /// Oldest first.
    workspaces: Vec<WorkspaceSummary>,
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// Create a workspace
///
/// Creates a workspace.
#[utoipa::path(post, path = "/admin/workspaces", tag = "admin", operation_id = "createWorkspace",
    request_body = CreateWorkspace, responses((status = 201, description = "Created.", body = Workspace)))]
pub async fn create_workspace(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateWorkspace>,
) -> ApiResult<(StatusCode, Json<Workspace>)> {
    let name = body.validate()?;
    Ok((StatusCode::CREATED, Json(crate::service::admin::create_workspace(&state, &name).await?)))
}

/// List workspaces
///
/// Lists workspaces, oldest first, with a summary of their webhook settings: never a secret, never a full URL
/// (only its host).
#[utoipa::path(get, path = "/admin/workspaces", tag = "admin", operation_id = "listWorkspaces", params(PageParams),
    responses((status = 200, description = "A page of workspaces.", body = WorkspaceList),
        (status = 422, response = super::docs::ValidationFailed)))]
pub async fn list_workspaces(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery,
) -> ApiResult<Json<WorkspaceList>> {
    let page = pagination::params(&query, Vec::new())?;
    let found = workspaces::list(&state.pool, page.after, page.limit + 1).await?;
    let (page, next_cursor) = pagination::page(found, page.limit, |w| w.id);
    let workspaces = page
        .into_iter()
        .map(|w| WorkspaceSummary {
            id: w.id,
            name: w.name,
            created_at: w.created_at,
            crm_webhook: WebhookSummary {
                enabled: w.webhook_enabled,
                url_host: w
                    .webhook_url
                    .as_deref()
                    .and_then(|u| url::Url::parse(u).ok())
                    .and_then(|u| u.host_str().map(str::to_owned)),
                secret_set: w.secret_set,
            },
        })
        .collect();
    Ok(Json(WorkspaceList { workspaces, next_cursor }))
}

/// Create a workspace token
///
/// Creates a bearer token for the workspace with the given role. The token appears in this response only; the
/// service keeps only its hash.
#[utoipa::path(post, path = "/admin/workspaces/{ws}/tokens", tag = "admin", operation_id = "createToken",
    params(super::docs::WsParam), request_body = CreateToken,
    responses((status = 201, description = "Created.", body = TokenCreated)))]
pub async fn create_token(
    _: Admin,
    path: WsPath,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    let (role, name) = body.validate()?;
    let created = crate::service::admin::create_token(&state, path.workspace_id, role, &name).await?;
    Ok((StatusCode::CREATED, Json(TokenCreated { id: created.id, token: created.plaintext, role, name })))
}

/// Revoke a workspace token
///
/// Deletes the token; it stops working on the very next request, on every replica. A token id that does not
/// belong to the workspace is a 404.
#[utoipa::path(delete, path = "/admin/workspaces/{ws}/tokens/{id}", tag = "admin", operation_id = "deleteToken",
    params(super::docs::WsIdParams), responses((status = 204, description = "Deleted.")))]
pub async fn delete_token(_: Admin, path: WsPath, State(state): State<AppState>) -> ApiResult<StatusCode> {
    let id = path.id.ok_or(ApiError::NotFound("token"))?;
    crate::service::admin::revoke_token(&state, path.workspace_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
