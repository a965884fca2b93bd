//! The workspace's CRM webhook settings. The secret is write-only: it goes in through `PUT` or comes out once from
//! the generate route, and is otherwise never returned, logged or traced; only `secret_set` and `secret_last4` are.

use super::docs::WsParam;
use crate::auth::{can, Authorized};
use crate::domain::settings::SettingsBody;
use crate::error::ApiResult;
use crate::extract::{parse_json, JsonBytes};
use crate::repo::settings::{self, StoredSettings};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A workspace's CRM webhook settings as every settings route shows them. The secret itself is never returned
/// (only `secret_set` and `secret_last4`). A workspace that never saved settings shows the defaults: disabled, no
/// URL, both events, no secret, `updated_at` null.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookSettings)]
pub struct SettingsView {
    enabled: bool,
    /// The target URL, normalised (for example host lower-cased, trailing dot removed).
    #[schema(required = true, format = "uri", max_length = 2048)]
    url: Option<String>,
    /// The subscribed events.
    #[schema(value_type = Vec<super::docs::SubscribableEventSchema>)]
    events: Vec<String>,
    /// Whether a signing secret is stored.
    secret_set: bool,
    /// The last four characters of the current secret, to tell secrets apart; null when none is set.
    #[schema(required = true, max_length = 4)]
    secret_last4: Option<String>,
    /// When the settings were last written; null if never.
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    #[schema(required = true)]
    updated_at: Option<DateTime<Utc>>,
    /// Why the system (not a person) turned the webhook off, for example because the endpoint answered 410 Gone;
    /// null otherwise. Cleared when the webhook is enabled again.
    #[schema(required = true)]
    disabled_reason: Option<String>,
    /// While a replaced secret still signs beside the current one (24 hours after a rotation, unless dropped):
    /// until when. Null when there is none.
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    #[schema(required = true)]
    previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The most requests per second sent to the URL, shared by the workers; null: no cap.
    #[schema(required = true)]
    max_per_second: Option<f64>,
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
            max_per_second: s.max_per_second,
        }
    }
}

/// The new secret, shown once.
#[derive(Serialize, ToSchema)]
#[schema(as = GeneratedSecret)]
pub struct GeneratedSecret {
    /// `whsec_` + standard base64 of 24 random bytes. Store it now: no route returns it again.
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]{32}$")]
    secret: String,
}

/// A queued test event.
#[derive(Serialize, ToSchema)]
#[schema(as = TestQueued)]
pub struct TestQueued {
    /// The test event's delivery (and webhook) id; the delivery exists at once, `pending`.
    delivery_id: Uuid,
}

/// Get the CRM webhook settings
///
/// The workspace's webhook settings, masked: the secret is never returned.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/settings/crm-webhook", tag = "webhook-settings",
    operation_id = "getWebhookSettings", params(WsParam),
    responses((status = 200, description = "The settings.", body = SettingsView)))]
pub async fn get(
    caller: Authorized<can::ReadSettings>,
    State(state): State<AppState>,
) -> ApiResult<Json<SettingsView>> {
    Ok(Json(settings::get(&state.pool, caller.workspace_id).await?.into()))
}

/// Replace the CRM webhook settings
///
/// Writes `enabled`, `url` and `events`, and the secret when one is given (absent keeps the current one).
/// Enabling requires a URL, a secret and at least one event; enabling clears `disabled_reason`. A rejected URL,
/// event or secret is a 422 naming the field (`url`, `events[<i>]`, `events`, `secret`) and saves nothing;
/// messages never echo the URL or the secret. A new secret replacing a set one keeps the old one valid for signing
/// for 24 hours.
#[utoipa::path(put, path = "/v1/workspaces/{ws}/settings/crm-webhook", tag = "webhook-settings",
    operation_id = "putWebhookSettings", params(WsParam), request_body = SettingsBody,
    responses((status = 200, description = "The saved settings (masked).", body = SettingsView)))]
pub async fn put(
    caller: Authorized<can::WriteSettings>,
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Json<SettingsView>> {
    let update = parse_json::<SettingsBody>(&body)?.validate(&state.egress)?;
    Ok(Json(crate::service::settings::save(&state, caller.workspace_id, update).await?.into()))
}

/// Generate a new webhook secret
///
/// Generates a `whsec_` secret, stores it (encrypted at rest) and returns it this once. Other settings are kept; a
/// replaced secret stays valid for signing for 24 hours. No request body.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/settings/crm-webhook/secret", tag = "webhook-settings",
    operation_id = "generateWebhookSecret", params(WsParam),
    responses((status = 200, description = "The new secret, shown once.", body = GeneratedSecret)))]
pub async fn generate_secret(
    caller: Authorized<can::WriteSettings>,
    State(state): State<AppState>,
) -> ApiResult<Json<GeneratedSecret>> {
    let secret = crate::service::settings::generate_secret(&state, caller.workspace_id).await?;
    Ok(Json(GeneratedSecret { secret: secret.expose_secret().to_owned() }))
}

/// Stop signing with the replaced secret now
///
/// After a rotation the replaced secret keeps signing beside the new one for 24 hours, so receivers can switch.
/// When it was replaced because it leaked, end that at once: the workers sign with the current secret only from
/// the next attempt on. Idempotent: 204 whether or not a replaced secret was kept.
#[utoipa::path(delete, path = "/v1/workspaces/{ws}/settings/crm-webhook/secret/previous", tag = "webhook-settings",
    operation_id = "dropPreviousWebhookSecret", params(WsParam),
    responses((status = 204, description = "No replaced secret signs any more.")))]
pub async fn drop_previous_secret(
    caller: Authorized<can::WriteSettings>,
    State(state): State<AppState>,
) -> ApiResult<StatusCode> {
    crate::service::settings::drop_previous_secret(&state, caller.workspace_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a test event
///
/// Queues a `webhook.test` event (trigger `test`, `row` null) through the same outbox, stream and worker as row
/// changes. The delivery is recorded as `pending` at once, so `delivery_id` can be looked up immediately. A test is
/// sent whenever the webhook has a URL and a secret, even while it is disabled or the events are not subscribed,
/// so a webhook can be tried before it is switched on; without a URL or secret it is recorded as `skipped`. No
/// request body.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/settings/crm-webhook/test", tag = "webhook-settings",
    operation_id = "sendWebhookTest", params(WsParam),
    responses((status = 202, description = "Queued.", body = TestQueued)))]
pub async fn send_test(
    caller: Authorized<can::SendTestEvent>,
    State(state): State<AppState>,
) -> ApiResult<(StatusCode, Json<TestQueued>)> {
    let delivery_id = crate::service::settings::send_test(&state, caller.workspace_id).await?;
    Ok((StatusCode::ACCEPTED, Json(TestQueued { delivery_id })))
}
