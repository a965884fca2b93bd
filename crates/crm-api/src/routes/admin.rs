//! `/admin/*`: workspaces and their tokens, for the operator holding `CRM_ADMIN_TOKEN`.

use crate::auth::{generate_token, Admin, Role};
use crate::domain::{text, Validator};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, WsPath};
use crate::pagination;
use crate::repo::workspaces;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    name: String,
}

pub async fn create_workspace(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateWorkspace>,
) -> ApiResult<impl IntoResponse> {
    let mut v = Validator::default();
    let name = v.check("name", text(Some(body.name), 200)).flatten();
    if name.is_none() {
        v.error("name", "must not be empty");
    }
    v.finish()?;
    let workspace = workspaces::create(&state.pool, &name.unwrap_or_default()).await?;
    Ok((StatusCode::CREATED, Json(workspace)))
}

pub async fn list_workspaces(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery,
) -> ApiResult<impl IntoResponse> {
    let page = pagination::params(&query, Vec::new())?;
    let found = workspaces::list(&state.pool, page.after, page.limit + 1).await?;
    let (page, next) = pagination::page(found, page.limit, |w| w.id);
    let items: Vec<_> = page
        .into_iter()
        .map(|w| {
            let url_host = w
                .webhook_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_owned));
            json!({
                "id": w.id,
                "name": w.name,
                "created_at": crm_mapping::format_timestamp(&w.created_at),
                "crm_webhook": {"enabled": w.webhook_enabled, "url_host": url_host, "secret_set": w.secret_set},
            })
        })
        .collect();
    Ok(Json(json!({"workspaces": items, "next_cursor": next})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    role: String,
    name: String,
}

pub async fn create_token(
    _: Admin,
    path: WsPath,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<impl IntoResponse> {
    let mut v = Validator::default();
    let role: Option<Role> =
        v.check("role", body.role.parse().map_err(|()| "must be one of viewer, editor, admin".into()));
    let name = v.check("name", text(Some(body.name), 200)).flatten();
    if name.is_none() {
        v.error("name", "must not be empty");
    }
    v.finish()?;
    let (role, name) = (role.unwrap_or(Role::Viewer), name.unwrap_or_default());
    if !workspaces::exists(&state.pool, path.workspace_id).await? {
        return Err(ApiError::NotFound("workspace"));
    }
    let token = generate_token();
    let id = workspaces::create_token(&state.pool, path.workspace_id, role, &name, &token.hash).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "token": token.plaintext, "role": role, "name": name}))))
}

pub async fn delete_token(_: Admin, path: WsPath, State(state): State<AppState>) -> ApiResult<StatusCode> {
    let id = path.id.ok_or(ApiError::NotFound("token"))?;
    // Listen before the revocation commits, so its notification cannot slip past.
    let watch = state.tokens.watch();
    match workspaces::delete_token(&state.pool, path.workspace_id, id).await? {
        Some(hash) => {
            state.tokens.remove(&hash);
            if !watch.heard(&hash).await {
                tracing::warn!("revocation notification not heard in time; other replicas drop the token on reconnect");
            }
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::NotFound("token")),
    }
}
