//! The tokens a replica has recently seen, and their revocation.
//!
//! A revocation drops the token from every replica's cache before the DELETE is answered on the revoking one, and
//! from the others as soon as its notification arrives; a lookup that straddles a revocation never puts the token
//! back.

use super::Role;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a known token is trusted without asking PostgreSQL. Revocation does not wait for it (see
/// [`TokenCache`]); the bound only matters if a notification is ever missed.
const TOKEN_TTL: Duration = Duration::from_secs(30);

/// How long a revoking replica waits to hear its own revocation notification before answering the DELETE.
const REVOCATION_ECHO_WAIT: Duration = Duration::from_secs(2);

struct Entries {
    /// Bumped by every removal. A lookup notes it before asking PostgreSQL and caches its answer only if it has not
    /// moved: a lookup that read the token before a revocation committed, and finishes after the revocation's
    /// invalidation ran, must not put the revoked token back for the rest of its TTL.
    generation: u64,
    /// Token hash → (cached at, workspace, role), for known tokens only: an unknown token always asks the
    /// database, so a token is usable the moment it is created.
    tokens: HashMap<[u8; 32], (Instant, Uuid, Role)>,
}

/// The tokens this replica has recently seen. A revocation removes the token here on the replica that deleted it,
/// and on every other replica when its `NOTIFY crm_tokens` arrives ([`TokenCache::heard_revocation`]); the
/// listener clears everything when it may have missed notifications. The revoking replica answers only once it
/// has heard its own notification, which PostgreSQL sends to every listener at the same moment, so by the time the
/// client sees 204 the other replicas have it too.
#[derive(Clone)]
pub struct TokenCache {
    entries: Arc<Mutex<Entries>>,
    /// Revocations heard by this replica's listener: `Some(hash)`, or `None` for "everything may be stale".
    heard: tokio::sync::broadcast::Sender<Option<[u8; 32]>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            entries: Arc::new(Mutex::new(Entries { generation: 0, tokens: HashMap::new() })),
            heard: tokio::sync::broadcast::channel(256).0,
        }
    }
}

impl TokenCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, hash: &[u8; 32]) -> Option<(Uuid, Role)> {
        self.lock().tokens.get(hash).filter(|(at, _, _)| at.elapsed() < TOKEN_TTL).map(|(_, ws, role)| (*ws, *role))
    }

    /// The generation to hand to [`TokenCache::put`] after a lookup that starts now.
    pub(super) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Caches a looked-up token, unless something was removed since the lookup began (`generation`).
    pub(super) fn put(&self, hash: [u8; 32], workspace_id: Uuid, role: Role, generation: u64) {
        let mut entries = self.lock();
        if entries.generation == generation {
            entries.tokens.insert(hash, (Instant::now(), workspace_id, role));
        }
    }

    pub fn remove(&self, hash: &[u8]) {
        let mut entries = self.lock();
        entries.generation += 1;
        if let Ok(hash) = <[u8; 32]>::try_from(hash) {
            entries.tokens.remove(&hash);
        }
    }

    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.tokens.clear();
    }

    /// The listener heard a revocation (`Some(hash)`) or may have missed some (`None`).
    pub fn heard_revocation(&self, hash: Option<&[u8]>) {
        match hash.and_then(|h| <[u8; 32]>::try_from(h).ok()) {
            Some(hash) => {
                self.remove(&hash);
                let _ = self.heard.send(Some(hash));
            }
            None => {
                self.clear();
                let _ = self.heard.send(None);
            }
        }
    }

    /// Starts listening for revocations heard, before a revocation commits.
    pub fn watch(&self) -> RevocationWatch {
        RevocationWatch(self.heard.subscribe())
    }
}

/// Waits for this replica's listener to hear a revocation (see [`TokenCache`]).
pub struct RevocationWatch(tokio::sync::broadcast::Receiver<Option<[u8; 32]>>);

impl RevocationWatch {
    /// Returns once the notification for `hash` (or a gap) was heard, or after a bounded wait if the listener is
    /// away; in that case the other replicas drop the token on their listeners' reconnect, or at the TTL.
    pub async fn heard(mut self, hash: &[u8]) -> bool {
        let wait = async {
            loop {
                match self.0.recv().await {
                    Ok(Some(heard)) if heard[..] == *hash => return true,
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return true,
                }
            }
        };
        tokio::time::timeout(REVOCATION_ECHO_WAIT, wait).await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_that_straddles_a_revocation_is_not_cached() {
        let cache = TokenCache::default();
        let (hash, ws) = ([7u8; 32], Uuid::now_v7());
        // The lookup starts (and reads the token) before the revocation; the invalidation runs before it finishes.
        let generation = cache.generation();
        cache.heard_revocation(Some(&hash));
        cache.put(hash, ws, Role::Admin, generation);
        assert_eq!(cache.get(&hash), None, "a revoked token was cached after its invalidation");
        // A lookup that starts after the invalidation is cached as usual.
        let generation = cache.generation();
        cache.put(hash, ws, Role::Admin, generation);
        assert_eq!(cache.get(&hash), Some((ws, Role::Admin)));
    }

    #[tokio::test]
    async fn a_revocation_watch_returns_when_its_hash_is_heard() {
        let cache = TokenCache::default();
        let watch = cache.watch();
        cache.heard_revocation(Some(&[1u8; 32]));
        cache.heard_revocation(Some(&[2u8; 32]));
        assert!(watch.heard(&[2u8; 32]).await);
    }
}
