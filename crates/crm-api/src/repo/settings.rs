//! Webhook settings. The secret goes in and out of this module sealed; only the worker ever opens it.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Row};
use uuid::Uuid;

/// The stored settings of one workspace.
#[derive(Debug, Clone, Default)]
pub struct StoredSettings {
    pub enabled: bool,
    pub url: Option<String>,
    pub events: Vec<String>,
    pub secret_sealed: Option<Vec<u8>>,
    pub secret_last4: Option<String>,
    pub disabled_reason: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl StoredSettings {
    /// What a workspace that never saved settings has.
    pub fn defaults() -> Self {
        StoredSettings {
            events: crm_events::EventType::SUBSCRIBABLE.iter().map(|e| e.as_str().to_owned()).collect(),
            ..Default::default()
        }
    }
}

#[tracing::instrument(skip(db))]
pub async fn get(db: impl PgExecutor<'_>, workspace_id: Uuid) -> Result<StoredSettings, sqlx::Error> {
    let row = sqlx::query(
        "SELECT enabled, url, events, secret_sealed, secret_last4, disabled_reason, updated_at
           FROM webhook_settings WHERE workspace_id = $1",
    )
    .bind(workspace_id)
    .fetch_optional(db)
    .await?;
    Ok(match row {
        None => StoredSettings::defaults(),
        Some(r) => StoredSettings {
            enabled: r.get("enabled"),
            url: r.get("url"),
            events: r.get("events"),
            secret_sealed: r.get("secret_sealed"),
            secret_last4: r.get("secret_last4"),
            disabled_reason: r.get("disabled_reason"),
            updated_at: r.get("updated_at"),
        },
    })
}

/// Locks the settings row (creating it with defaults if needed) so concurrent writers serialise.
pub async fn lock(tx: &mut PgConnection, workspace_id: Uuid) -> Result<StoredSettings, sqlx::Error> {
    sqlx::query("INSERT INTO webhook_settings (workspace_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(workspace_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT 1 FROM webhook_settings WHERE workspace_id = $1 FOR UPDATE")
        .bind(workspace_id)
        .execute(&mut *tx)
        .await?;
    get(&mut *tx, workspace_id).await
}

/// A new secret to store, already sealed.
pub struct NewSecret {
    pub sealed: Vec<u8>,
    pub last4: String,
}

/// Writes the settings. A new secret that replaces a set one keeps the old one for 24 hours, so the worker can
/// sign with both while receivers switch. Tells the workers to drop their cached copy.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn save(
    tx: &mut PgConnection,
    workspace_id: Uuid,
    enabled: bool,
    url: Option<&str>,
    events: &[String],
    secret: Option<NewSecret>,
) -> Result<StoredSettings, sqlx::Error> {
    let (sealed, last4) = match &secret {
        Some(s) => (Some(s.sealed.as_slice()), Some(s.last4.as_str())),
        None => (None, None),
    };
    sqlx::query(
        "UPDATE webhook_settings SET
             enabled = $2, url = $3, events = $4,
             previous_secret_sealed = CASE WHEN $5::bytea IS NOT NULL AND secret_sealed IS NOT NULL
                                           THEN secret_sealed ELSE previous_secret_sealed END,
             previous_secret_expires_at = CASE WHEN $5::bytea IS NOT NULL AND secret_sealed IS NOT NULL
                                           THEN now() + interval '24 hours' ELSE previous_secret_expires_at END,
             secret_sealed = coalesce($5, secret_sealed),
             secret_last4 = coalesce($6, secret_last4),
             disabled_reason = CASE WHEN $2 THEN NULL ELSE disabled_reason END,
             updated_at = now()
         WHERE workspace_id = $1",
    )
    .bind(workspace_id)
    .bind(enabled)
    .bind(url)
    .bind(events)
    .bind(sealed)
    .bind(last4)
    .execute(&mut *tx)
    .await?;
    notify_changed(&mut *tx, workspace_id).await?;
    get(&mut *tx, workspace_id).await
}

/// Tells every worker (at commit) that this workspace's settings changed.
pub async fn notify_changed(tx: &mut PgConnection, workspace_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify('crm_settings', $1)").bind(workspace_id.to_string()).execute(tx).await?;
    Ok(())
}
