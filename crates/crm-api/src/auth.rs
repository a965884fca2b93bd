//! Authentication and capabilities (docs/contract.md §2, "Auth and capabilities").
//!
//! Workspace tokens are random 32-byte values shown once; only their SHA-256 is stored. A replica keeps the tokens
//! it has seen in a short-lived cache ([`TokenCache`]); a revocation drops the token from every replica's cache
//! before the DELETE is answered on the revoking one, and from the others as soon as its notification arrives. The
//! order of checks is fixed: no or unknown token → 401; a token of another workspace → 404 (as if the workspace
//! did not exist, so tokens cannot probe for workspace ids); a role without the capability → 403.
//!
//! The capability a route needs is part of its handler's signature ([`Authorized`]`<`[`can`]`::EditRows>`), and is
//! checked by the extractor, before the handler's body extractor reads a byte of the body: a viewer cannot make
//! the service buffer (or wait for) a body it would refuse anyway.

use crate::error::ApiError;
use crate::extract::WsPath;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
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

    fn get(&self, hash: &[u8; 32]) -> Option<(Uuid, Role)> {
        self.lock().tokens.get(hash).filter(|(at, _, _)| at.elapsed() < TOKEN_TTL).map(|(_, ws, role)| (*ws, *role))
    }

    /// The generation to hand to [`TokenCache::put`] after a lookup that starts now.
    fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Caches a looked-up token, unless something was removed since the lookup began (`generation`).
    fn put(&self, hash: [u8; 32], workspace_id: Uuid, role: Role, generation: u64) {
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

/// A workspace token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// What the role may do. Roles are nested: editor ⊃ viewer, admin ⊃ editor.
    pub fn grants(self, capability: Capability) -> bool {
        self >= capability.minimum_role()
    }
}

impl FromStr for Role {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a workspace token can be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    ReadRows,
    ReadSettings,
    ReadDeliveries,
    RecordInterest,
    EditRows,
    WriteSettings,
    SendTestEvent,
    Redeliver,
}

impl Capability {
    fn minimum_role(self) -> Role {
        match self {
            Capability::ReadRows | Capability::ReadSettings | Capability::ReadDeliveries => Role::Viewer,
            Capability::RecordInterest | Capability::EditRows => Role::Editor,
            Capability::WriteSettings | Capability::SendTestEvent | Capability::Redeliver => Role::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::ReadRows => "rows:read",
            Capability::ReadSettings => "settings:read",
            Capability::ReadDeliveries => "deliveries:read",
            Capability::RecordInterest => "interest:write",
            Capability::EditRows => "rows:write",
            Capability::WriteSettings => "settings:write",
            Capability::SendTestEvent => "webhook:test",
            Capability::Redeliver => "deliveries:redeliver",
        }
    }
}

/// A new token: the plaintext (returned once) and the hash (stored).
pub struct NewToken {
    pub plaintext: String,
    pub hash: [u8; 32],
}

/// Generates a workspace token: `crm_` and 32 random bytes in URL-safe base64.
pub fn generate_token() -> NewToken {
    let bytes: [u8; 32] = service_common::crypto::random_bytes();
    let plaintext = format!("crm_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_token(&plaintext);
    NewToken { plaintext, hash }
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The operator, authenticated by `CRM_ADMIN_TOKEN`. When that variable is unset, the admin API is off and every
/// admin request is 404.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let expected = state.admin_token_hash.ok_or(ApiError::NotFound("route"))?;
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        // Comparing fixed-size digests: the time taken says nothing about the token.
        if hash_token(token) == expected {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// A workspace token holder, already checked to belong to the workspace in the path.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub workspace_id: Uuid,
    pub role: Role,
    /// The `id` path parameter, where the route has one.
    pub resource_id: Option<Uuid>,
}

impl Caller {
    pub fn require(&self, capability: Capability) -> Result<(), ApiError> {
        if self.role.grants(capability) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(capability.as_str()))
        }
    }

    /// The `id` path parameter (routes that have one).
    pub fn id(&self) -> Result<Uuid, ApiError> {
        self.resource_id.ok_or(ApiError::NotFound("resource"))
    }
}

/// A capability as a type, for [`Authorized`].
pub trait Needs {
    const CAPABILITY: Capability;
}

/// One marker type per [`Capability`], named alike: `Authorized<can::EditRows>`.
pub mod can {
    use super::{Capability, Needs};

    macro_rules! markers {
        ($($name:ident),* $(,)?) => {$(
            #[doc = concat!("Needs [`Capability::", stringify!($name), "`].")]
            pub struct $name;
            impl Needs for $name {
                const CAPABILITY: Capability = Capability::$name;
            }
        )*};
    }

    markers!(ReadRows, ReadSettings, ReadDeliveries, RecordInterest, EditRows, WriteSettings, SendTestEvent, Redeliver);
}

/// A workspace token holder whose role grants `N`'s capability: 401, 404 and 403 are all decided from the request
/// head, before the body is read.
pub struct Authorized<N: Needs> {
    caller: Caller,
    needs: std::marker::PhantomData<N>,
}

impl<N: Needs> std::ops::Deref for Authorized<N> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl<N: Needs> FromRequestParts<AppState> for Authorized<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(N::CAPABILITY)?;
        Ok(Authorized { caller, needs: std::marker::PhantomData })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        let hash = hash_token(token);
        let (workspace_id, role) = match state.tokens.get(&hash) {
            Some(known) => known,
            None => {
                let generation = state.tokens.generation();
                let found =
                    crate::repo::workspaces::token_by_hash(&state.pool, &hash).await?.ok_or(ApiError::Unauthorized)?;
                state.tokens.put(hash, found.workspace_id, found.role, generation);
                (found.workspace_id, found.role)
            }
        };
        let path = WsPath::from_request_parts(parts, state).await?;
        if path.workspace_id != workspace_id {
            return Err(ApiError::NotFound("workspace"));
        }
        Ok(Caller { workspace_id, role, resource_id: path.id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_nested() {
        assert!(Role::Viewer.grants(Capability::ReadRows));
        assert!(!Role::Viewer.grants(Capability::EditRows));
        assert!(Role::Editor.grants(Capability::RecordInterest));
        assert!(!Role::Editor.grants(Capability::WriteSettings));
        assert!(Role::Admin.grants(Capability::Redeliver));
    }

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

    #[test]
    fn tokens_are_unique_and_only_their_hash_matches() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a.plaintext, b.plaintext);
        assert!(a.plaintext.starts_with("crm_") && a.plaintext.len() > 40);
        assert_eq!(hash_token(&a.plaintext), a.hash);
        assert_ne!(a.hash, b.hash);
    }
}
