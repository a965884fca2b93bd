//! Webhook settings as the worker needs them: read from PostgreSQL, secrets opened into a ready [`Signer`] once,
//! cached per workspace, and dropped from the cache when crm-api announces a change (`NOTIFY crm_settings`).
//!
//! The cache is what keeps per-event work to a minimum: no query and no decryption per delivery. A short TTL
//! bounds staleness if a notification is ever missed (the listener also clears everything after reconnecting).

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use service_common::db::Heard;
use service_common::SecretKeyring;
use sqlx::{PgPool, Row};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use webhook_signing::{Signer, SigningKey};

const CHANNEL: &str = "crm_settings";
const TTL: Duration = Duration::from_secs(60);

/// One workspace's webhook, ready to send with.
#[derive(Debug)]
pub struct Webhook {
    pub enabled: bool,
    pub url: Option<String>,
    pub events: Vec<String>,
    /// Signs with the current secret, and during a rotation also the previous one (new first).
    pub signer: Option<Signer>,
}

impl Webhook {
    pub fn subscribes(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == event_type)
    }
}

/// Per workspace: when it was loaded, and what was found (`None`: no settings row).
type Entries = HashMap<Uuid, (Instant, Option<Arc<Webhook>>)>;

#[derive(Clone)]
pub struct SettingsCache {
    pool: PgPool,
    keyring: SecretKeyring,
    entries: Arc<Mutex<Entries>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading webhook settings failed")]
    Database(#[from] sqlx::Error),
}

impl SettingsCache {
    pub fn new(pool: PgPool, keyring: SecretKeyring) -> Self {
        SettingsCache { pool, keyring, entries: Arc::default() }
    }

    /// The workspace's webhook (`None`: never configured), from the cache when fresh.
    pub async fn get(&self, workspace_id: Uuid) -> Result<Option<Arc<Webhook>>, SettingsError> {
        if let Some((at, hit)) = self.lock().get(&workspace_id) {
            if at.elapsed() < TTL {
                return Ok(hit.clone());
            }
        }
        let loaded = self.load(workspace_id).await?.map(Arc::new);
        self.lock().insert(workspace_id, (Instant::now(), loaded.clone()));
        Ok(loaded)
    }

    pub fn invalidate(&self, workspace_id: Uuid) {
        self.lock().remove(&workspace_id);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn load(&self, workspace_id: Uuid) -> Result<Option<Webhook>, SettingsError> {
        let row = sqlx::query(
            "SELECT enabled, url, events, secret_sealed, previous_secret_sealed, previous_secret_expires_at
               FROM webhook_settings WHERE workspace_id = $1",
        )
        .bind(workspace_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut keys = Vec::new();
        let context = workspace_id.as_bytes();
        let current: Option<Vec<u8>> = row.get("secret_sealed");
        let previous: Option<Vec<u8>> = row.get("previous_secret_sealed");
        let previous_until: Option<DateTime<Utc>> = row.get("previous_secret_expires_at");
        let rotation_open = previous_until.is_some_and(|until| until > Utc::now());
        for sealed in current.iter().chain(previous.iter().filter(|_| rotation_open)) {
            match self.keyring.open(sealed, context) {
                Ok(secret) => match SigningKey::from_secret(secret.expose_secret()) {
                    Ok(key) => keys.push(key),
                    Err(e) => tracing::error!(%workspace_id, error = %e, "stored webhook secret is not a usable key"),
                },
                Err(e) => tracing::error!(%workspace_id, error = %e, "cannot open stored webhook secret"),
            }
        }
        Ok(Some(Webhook {
            enabled: row.get("enabled"),
            url: row.get("url"),
            events: row.get("events"),
            signer: Signer::new(keys).ok(),
        }))
    }

    /// Follows `crm_settings` notifications until `shutdown`: a workspace's entry is dropped when its settings
    /// change, and everything when notifications may have been missed.
    pub async fn follow_changes(self, shutdown: CancellationToken) {
        service_common::db::follow_channel(&self.pool, CHANNEL, &shutdown, |heard| match heard {
            Heard::Notification(payload) => match Uuid::parse_str(payload) {
                Ok(ws) => self.invalidate(ws),
                Err(_) => self.clear(),
            },
            Heard::Gap => self.clear(),
        })
        .await
    }
}
