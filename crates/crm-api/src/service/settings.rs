//! Webhook settings writes: each locks the workspace's settings row, so concurrent writers serialise, and tells
//! the workers to drop their cached copy at commit. The secret is sealed before it reaches the repository and is
//! never logged.

use crate::domain::settings::{last4, SettingsUpdate};
use crate::error::ApiResult;
use crate::repo::outbox::NewEvent;
use crate::repo::settings::{self, NewSecret, Saved, StoredSettings};
use crate::repo::{deliveries, outbox};
use crate::state::AppState;
use secrecy::SecretString;
use uuid::Uuid;

fn sealed(state: &AppState, workspace_id: Uuid, secret: &SecretString) -> NewSecret {
    NewSecret { sealed: state.keyring.seal(secret, workspace_id.as_bytes()), last4: last4(secret) }
}

/// Saves a checked `PUT`. A new secret that replaces a set one keeps the old one signing for 24 hours.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn save(state: &AppState, workspace_id: Uuid, update: SettingsUpdate) -> ApiResult<StoredSettings> {
    let mut tx = state.pool.begin().await?;
    let current = settings::lock(&mut tx, workspace_id).await?;
    update.check_complete(current.secret_sealed.is_some())?;
    let secret = update.secret.as_ref().map(|s| sealed(state, workspace_id, s));
    let write = Saved {
        enabled: update.enabled,
        url: update.url.as_deref(),
        events: &update.events,
        secret,
        max_per_second: update.max_per_second,
    };
    let saved = settings::save(&mut tx, workspace_id, write).await?;
    tx.commit().await?;
    tracing::info!(enabled = saved.enabled, "webhook settings saved");
    Ok(saved)
}

/// Generates a `whsec_` secret and stores it in place of the current one (which keeps signing for 24 hours).
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn generate_secret(state: &AppState, workspace_id: Uuid) -> ApiResult<SecretString> {
    let secret = SecretString::from(webhook_signing::generate_secret(service_common::crypto::random_bytes()));
    let mut tx = state.pool.begin().await?;
    let current = settings::lock(&mut tx, workspace_id).await?;
    let new = sealed(state, workspace_id, &secret);
    let write = Saved {
        enabled: current.enabled,
        url: current.url.as_deref(),
        events: &current.events,
        secret: Some(new),
        max_per_second: current.max_per_second,
    };
    settings::save(&mut tx, workspace_id, write).await?;
    tx.commit().await?;
    tracing::info!("webhook secret generated");
    Ok(secret)
}

/// Stops signing with the replaced secret at once: for a secret that was replaced because it leaked, the 24-hour
/// overlap would keep the leaked one valid. Idempotent.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn drop_previous_secret(state: &AppState, workspace_id: Uuid) -> ApiResult<()> {
    let mut tx = state.pool.begin().await?;
    let dropped = settings::drop_previous_secret(&mut tx, workspace_id).await?;
    tx.commit().await?;
    tracing::info!(dropped, "previous webhook secret dropped");
    Ok(())
}

/// Queues a `webhook.test` event through the same pipeline as row changes, with its delivery created at once so
/// its id can be looked up. Returns the delivery id.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn send_test(state: &AppState, workspace_id: Uuid) -> ApiResult<Uuid> {
    let event = crm_events::RowChangedEvent::webhook_test(workspace_id);
    let headers = service_common::trace::current_headers();
    let mut tx = state.pool.begin().await?;
    outbox::enqueue(&mut tx, &NewEvent::of(&state.subjects, &event, &headers)).await?;
    outbox::notify(&mut tx).await?;
    deliveries::create_pending(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(event.id)
}
