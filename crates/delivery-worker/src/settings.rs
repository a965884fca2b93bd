//! Webhook settings as the worker needs them: read from PostgreSQL, secrets opened into a ready [`Signer`] once,
//! cached per workspace, and dropped from the cache when crm-api announces a change (`NOTIFY crm_settings`).
//!
//! The cache is what keeps per-event work to a minimum: no query and no decryption per delivery. A short TTL
//! bounds staleness if a notification is ever missed (the listener also clears everything after reconnecting).
//!
//! A lookup that misses reads the database and then fills the cache. If an invalidation lands between the read and
//! the fill, the value read may be the one the change replaced, and storing it would undo the invalidation for a
//! whole TTL. So the cache keeps a generation, bumped by every invalidation: a lookup notes the generation before
//! it reads, and its fill is stored only if the generation is still the same.
//!
//! Lookups that miss together read once: a miss takes its workspace's load lock (one of [`LOAD_LOCKS`] stripes)
//! and looks again once it has it, so when an entry expires or the cache is cleared under load, a workspace's
//! waiting deliveries cost one query and one decryption, not one each, and a burst cannot take every connection of
//! the pool for the same row. A read that fails fails for those who waited on it too: while the database is away,
//! a burst costs one wait for a connection, not one after another.

use chrono::Utc;
use secrecy::ExposeSecret;
use service_common::db::Heard;
use service_common::SecretKeyring;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use webhook_signing::{Signer, SigningKey};

const TTL: Duration = Duration::from_secs(60);
/// Stripes of the load lock: misses of workspaces in different stripes read in parallel.
const LOAD_LOCKS: usize = 64;

/// One workspace's webhook, ready to send with.
#[derive(Debug)]
pub struct Webhook {
    pub enabled: bool,
    pub url: Option<String>,
    pub events: Vec<String>,
    /// Signs with the current secret, and during a rotation also the previous one (new first).
    pub signer: Option<Signer>,
    /// The most requests per second to send to the URL, shared by every worker; `None`: no cap.
    pub max_per_second: Option<f64>,
}

impl Webhook {
    pub fn subscribes(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == event_type)
    }
}

/// What a lookup finds (`None`: the workspace has no settings row).
type Found = Option<Arc<Webhook>>;

/// The cache itself, without the database: per workspace, when it was loaded and what was found; and the
/// generation, bumped by every invalidation. One generation for all workspaces keeps this simple: a fill in flight
/// for another workspace is not stored either, and its next lookup just reads again.
#[derive(Default)]
struct Entries {
    generation: u64,
    map: HashMap<Uuid, (Instant, Found)>,
}

/// The generation a lookup saw before reading the database; its fill counts only if no invalidation came since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticket(u64);

impl Entries {
    /// A fresh entry, or the ticket for filling one.
    fn lookup(&self, workspace_id: Uuid) -> Result<Found, Ticket> {
        match self.map.get(&workspace_id) {
            Some((at, found)) if at.elapsed() < TTL => Ok(found.clone()),
            _ => Err(Ticket(self.generation)),
        }
    }

    /// Stores what a lookup read, unless an invalidation came after its ticket was taken (then what it read may
    /// be stale, and the next lookup reads again). Says whether it stored.
    fn fill(&mut self, workspace_id: Uuid, ticket: Ticket, found: Found) -> bool {
        if ticket.0 != self.generation {
            return false;
        }
        self.map.insert(workspace_id, (Instant::now(), found));
        true
    }

    fn invalidate(&mut self, workspace_id: Uuid) {
        self.generation = self.generation.wrapping_add(1);
        self.map.remove(&workspace_id);
    }

    fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.map.clear();
    }
}

#[derive(Clone)]
pub struct SettingsCache {
    pool: PgPool,
    keyring: SecretKeyring,
    entries: Arc<Mutex<Entries>>,
    /// Held while a workspace's settings are read; indexed by [`stripe`]. Each holds the stripe's last failed
    /// read, so whoever waited on it gets its error rather than trying again.
    loads: Arc<[tokio::sync::Mutex<Option<FailedRead>>]>,
    /// How many times the database was read.
    reads: Arc<AtomicU64>,
}

/// A read of a workspace's settings that failed, and when.
#[derive(Debug, Clone, Copy)]
struct FailedRead {
    workspace_id: Uuid,
    at: Instant,
}

/// The load lock stripe of a workspace.
fn stripe(workspace_id: Uuid) -> usize {
    (workspace_id.as_u128() % LOAD_LOCKS as u128) as usize
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading webhook settings failed")]
    Database(#[from] sqlx::Error),
    /// The read this lookup waited for failed.
    #[error("reading webhook settings failed (a read this lookup waited for)")]
    Shared,
}

impl SettingsCache {
    pub fn new(pool: PgPool, keyring: SecretKeyring) -> Self {
        let loads = (0..LOAD_LOCKS).map(|_| tokio::sync::Mutex::new(None)).collect();
        SettingsCache { pool, keyring, entries: Arc::default(), loads, reads: Arc::default() }
    }

    /// The workspace's webhook (`None`: never configured), from the cache when fresh.
    /// A value read while settings changed is returned to this caller but not cached (see the module's docs).
    pub async fn get(&self, workspace_id: Uuid) -> Result<Option<Arc<Webhook>>, SettingsError> {
        if let Ok(found) = self.lock().lookup(workspace_id) {
            return Ok(found);
        }
        // One read per workspace at a time; whoever waited finds what the read before it stored, or its failure.
        let asked = Instant::now();
        let mut loading = self.loads[stripe(workspace_id)].lock().await;
        if loading.is_some_and(|failed| failed.workspace_id == workspace_id && failed.at >= asked) {
            return Err(SettingsError::Shared);
        }
        let ticket = match self.lock().lookup(workspace_id) {
            Ok(found) => return Ok(found),
            Err(ticket) => ticket,
        };
        self.reads.fetch_add(1, Ordering::Relaxed);
        let loaded = match self.load(workspace_id).await {
            Ok(loaded) => loaded.map(Arc::new),
            Err(e) => {
                *loading = Some(FailedRead { workspace_id, at: Instant::now() });
                return Err(e);
            }
        };
        self.lock().fill(workspace_id, ticket, loaded.clone());
        Ok(loaded)
    }

    /// What the cache holds for the workspace, without reading the database: `None` when nothing fresh is
    /// cached, `Some(None)` when the workspace is known to have no webhook.
    pub fn peek(&self, workspace_id: Uuid) -> Option<Option<Arc<Webhook>>> {
        self.lock().lookup(workspace_id).ok()
    }

    /// How many times the cache has read the database since it was made.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    pub fn invalidate(&self, workspace_id: Uuid) {
        self.lock().invalidate(workspace_id);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn load(&self, workspace_id: Uuid) -> Result<Option<Webhook>, SettingsError> {
        let row = sqlx::query!(
            "SELECT enabled, url, events, secret_sealed, previous_secret_sealed, previous_secret_expires_at,
                    max_per_second
               FROM webhook_settings WHERE workspace_id = $1",
            workspace_id
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut keys = Vec::new();
        let context = workspace_id.as_bytes();
        let rotation_open = row.previous_secret_expires_at.is_some_and(|until| until > Utc::now());
        let previous = row.previous_secret_sealed.iter().filter(|_| rotation_open);
        for sealed in row.secret_sealed.iter().chain(previous) {
            match self.keyring.open(sealed, context) {
                Ok(secret) => match SigningKey::from_secret(secret.expose_secret()) {
                    Ok(key) => keys.push(key),
                    Err(e) => tracing::error!(%workspace_id, error = %e, "stored webhook secret is not a usable key"),
                },
                Err(e) => tracing::error!(%workspace_id, error = %e, "cannot open stored webhook secret"),
            }
        }
        Ok(Some(Webhook {
            enabled: row.enabled,
            url: row.url,
            events: row.events,
            signer: Signer::new(keys).ok(),
            max_per_second: row.max_per_second,
        }))
    }

    /// Follows `crm_settings` notifications until `shutdown`: a workspace's entry is dropped when its settings
    /// change, and everything when notifications may have been missed.
    pub async fn follow_changes(self, shutdown: CancellationToken) {
        service_common::db::follow_channel(&self.pool, crm_db::Channel::Settings.name(), &shutdown, |heard| match heard
        {
            Heard::Notification(payload) => match Uuid::parse_str(payload) {
                Ok(ws) => self.invalidate(ws),
                Err(_) => self.clear(),
            },
            Heard::Gap => self.clear(),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str) -> Found {
        Some(Arc::new(Webhook {
            enabled: true,
            url: Some(url.to_owned()),
            events: Vec::new(),
            signer: None,
            max_per_second: None,
        }))
    }

    fn url(found: &Found) -> Option<&str> {
        found.as_ref().and_then(|webhook| webhook.url.as_deref())
    }

    #[test]
    fn a_fill_without_invalidation_is_cached() {
        let mut entries = Entries::default();
        let ws = Uuid::now_v7();
        let ticket = entries.lookup(ws).expect_err("empty cache");
        assert!(entries.fill(ws, ticket, webhook("https://a.example/in")));
        assert_eq!(url(&entries.lookup(ws).expect("cached")), Some("https://a.example/in"));
    }

    #[test]
    fn a_lookup_that_started_before_an_invalidation_does_not_cache_its_stale_value() {
        let mut entries = Entries::default();
        let ws = Uuid::now_v7();
        // The lookup misses and goes to read the database; it reads the old URL...
        let ticket = entries.lookup(ws).expect_err("empty cache");
        // ...while the change commits and its notification invalidates the workspace...
        entries.invalidate(ws);
        // ...and only then does the lookup come back to fill: its value must not be cached.
        assert!(!entries.fill(ws, ticket, webhook("https://old.example/in")));
        let ticket = entries.lookup(ws).expect_err("the stale value was cached");
        // The next lookup reads after the change, and its value is cached.
        assert!(entries.fill(ws, ticket, webhook("https://new.example/in")));
        assert_eq!(url(&entries.lookup(ws).expect("cached")), Some("https://new.example/in"));
    }

    #[test]
    fn a_clear_also_voids_fills_in_flight() {
        let mut entries = Entries::default();
        let (ws, other) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(entries.fill(other, entries.lookup(other).unwrap_err(), None));
        let ticket = entries.lookup(ws).expect_err("empty cache");
        entries.clear();
        assert!(!entries.fill(ws, ticket, webhook("https://old.example/in")));
        assert!(entries.lookup(ws).is_err() && entries.lookup(other).is_err(), "everything was dropped");
    }
}
