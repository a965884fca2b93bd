//! The workspace's CRM webhook settings. The secret is write-only: it goes in through `PUT` or comes out once from
//! the generate route, and is otherwise never returned, logged or traced; only `secret_set` and `secret_last4` are.

use crate::auth::{can, Authorized};
use crate::domain::{double_option, Validator};
use crate::error::ApiResult;
use crate::events;
use crate::extract::{parse_json, JsonBytes};
use crate::repo::settings::{self, NewSecret, StoredSettings};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use crm_events::EventType;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What every settings response shows.
#[derive(Serialize)]
pub struct SettingsView {
    enabled: bool,
    url: Option<String>,
    events: Vec<String>,
    secret_set: bool,
    secret_last4: Option<String>,
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    updated_at: Option<DateTime<Utc>>,
    /// Why the system turned the webhook off (for example the endpoint answered 410 Gone); null otherwise.
    disabled_reason: Option<String>,
    /// While a replaced secret still signs beside the current one: until when. Null when there is none.
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    previous_secret_expires_at: Option<DateTime<Utc>>,
}

impl From<StoredSettings> for SettingsView {
    fn from(s: StoredSettings) -> Self {
        SettingsView {
            enabled: s.enabled,
            url: s.url,
            events: s.events,
            secret_set: s.secret_sealed.is_some(),
            secret_last4: s.secret_last4,
            updated_at: s.updated_at,
            disabled_reason: s.disabled_reason,
            previous_secret_expires_at: s.previous_secret_expires_at,
        }
    }
}

pub async fn get(
    caller: Authorized<can::ReadSettings>,
    State(state): State<AppState>,
) -> ApiResult<Json<SettingsView>> {
    Ok(Json(settings::get(&state.pool, caller.workspace_id).await?.into()))
}

/// `PUT` body. `enabled`, `url` and `events` must be present (`url` may be null); `secret` is optional and absent
/// keeps the current one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    enabled: bool,
    #[serde(deserialize_with = "double_option")]
    url: Option<Option<String>>,
    events: Vec<String>,
    #[serde(default)]
    secret: Option<SecretString>,
}

/// Checks a secret a user chose. Messages never echo it.
fn check_secret(secret: &SecretString) -> Result<(), String> {
    let value = secret.expose_secret();
    if value.starts_with(webhook_signing::SECRET_PREFIX) {
        let min = webhook_signing::MIN_KEY_BYTES;
        return match webhook_signing::key_len(value) {
            Ok(len) if (min..=256).contains(&len) => Ok(()),
            Ok(_) | Err(webhook_signing::KeyError::EmptySecret) => {
                Err(format!("a whsec_ secret must decode to {min} to 256 bytes"))
            }
            Err(_) => Err("a whsec_ secret must be followed by base64".to_owned()),
        };
    }
    let len = value.chars().count();
    if !(16..=256).contains(&len) {
        return Err("must be 16 to 256 characters, or a whsec_ secret".to_owned());
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".to_owned());
    }
    Ok(())
}

fn last4(secret: &SecretString) -> String {
    let chars: Vec<char> = secret.expose_secret().chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

pub async fn put(
    caller: Authorized<can::WriteSettings>,
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Json<SettingsView>> {
    let body: SettingsBody = parse_json(&body)?;
    let mut v = Validator::default();
    let url = match body.url.flatten().filter(|u| !u.trim().is_empty()) {
        None => None,
        Some(raw) => v.check("url", state.egress.check_url(raw.trim()).map_err(|e| e.to_string())),
    };
    let mut events: Vec<String> = Vec::new();
    for (i, name) in body.events.iter().enumerate() {
        match EventType::parse_subscribable(name) {
            Some(t) if !events.iter().any(|e| e == t.as_str()) => events.push(t.as_str().to_owned()),
            Some(_) => {}
            None => v.error(format!("events[{i}]"), "must be crm_row.created or crm_row.updated"),
        }
    }
    if let Some(secret) = &body.secret {
        if let Err(message) = check_secret(secret) {
            v.error("secret", message);
        }
    }
    v.finish()?;

    let mut tx = state.pool.begin().await?;
    let current = settings::lock(&mut tx, caller.workspace_id).await?;
    if body.enabled {
        let mut v = Validator::default();
        if url.is_none() {
            v.error("url", "is required to enable the webhook");
        }
        if body.secret.is_none() && current.secret_sealed.is_none() {
            v.error("secret", "is required to enable the webhook; set one or generate one");
        }
        if events.is_empty() {
            v.error("events", "must name at least one event to enable the webhook");
        }
        v.finish()?;
    }
    let secret = body
        .secret
        .as_ref()
        .map(|s| NewSecret { sealed: state.keyring.seal(s, caller.workspace_id.as_bytes()), last4: last4(s) });
    let saved =
        settings::save(&mut tx, caller.workspace_id, body.enabled, url.as_ref().map(|u| u.as_str()), &events, secret)
            .await?;
    tx.commit().await?;
    tracing::info!(workspace_id = %caller.workspace_id, enabled = saved.enabled, "webhook settings saved");
    Ok(Json(saved.into()))
}

/// Generates a `whsec_` secret, stores it (the replaced one stays valid for 24 hours) and shows it this once.
pub async fn generate_secret(
    caller: Authorized<can::WriteSettings>,
    State(state): State<AppState>,
) -> ApiResult<impl IntoResponse> {
    let secret = SecretString::from(webhook_signing::generate_secret(service_common::crypto::random_bytes()));
    let mut tx = state.pool.begin().await?;
    let current = settings::lock(&mut tx, caller.workspace_id).await?;
    let new = NewSecret { sealed: state.keyring.seal(&secret, caller.workspace_id.as_bytes()), last4: last4(&secret) };
    settings::save(&mut tx, caller.workspace_id, current.enabled, current.url.as_deref(), &current.events, Some(new))
        .await?;
    tx.commit().await?;
    tracing::info!(workspace_id = %caller.workspace_id, "webhook secret generated");
    Ok((StatusCode::OK, Json(json!({"secret": secret.expose_secret()}))))
}

/// Stops signing with the replaced secret at once: for a secret that was replaced because it leaked, the 24-hour
/// overlap would keep the leaked one valid. Idempotent: 204 whether or not a previous secret was kept.
pub async fn drop_previous_secret(
    caller: Authorized<can::WriteSettings>,
    State(state): State<AppState>,
) -> ApiResult<StatusCode> {
    let mut tx = state.pool.begin().await?;
    let dropped = settings::drop_previous_secret(&mut tx, caller.workspace_id).await?;
    tx.commit().await?;
    tracing::info!(workspace_id = %caller.workspace_id, dropped, "previous webhook secret dropped");
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a `webhook.test` event through the same pipeline as row changes.
pub async fn send_test(
    caller: Authorized<can::SendTestEvent>,
    State(state): State<AppState>,
) -> ApiResult<impl IntoResponse> {
    let mut tx = state.pool.begin().await?;
    let event = events::test_event(&mut tx, &state.subjects, caller.workspace_id).await?;
    crate::repo::deliveries::create_pending(&mut tx, &event).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"delivery_id": event.id}))))
}
