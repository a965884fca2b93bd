//! Authentication and capabilities (CONTRACT §2, "Auth and capabilities").
//!
//! Workspace tokens are random 32-byte values shown once; only their SHA-256 is stored, and every request looks
//! the hash up, so a deleted token stops working on the very next request on every replica. The order of checks
//! is fixed: no or unknown token → 401; a token of another workspace → 404 (as if the workspace did not exist, so
//! tokens cannot probe for workspace ids); a role without the capability → 403.

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

/// How long a known token is trusted without asking PostgreSQL. Revocation does not wait for it: the replica
/// that deletes a token drops it at once, and tells the others (`NOTIFY crm_tokens`), which drop it on receipt;
/// the bound only matters if a notification is ever missed (the listener also clears everything on reconnect).
const TOKEN_TTL: Duration = Duration::from_secs(30);

/// Token hash → (workspace, role), for known tokens only: an unknown token always asks the database, so a token
/// is usable the moment it is created.
/// Token hash → (cached at, workspace, role).
type TokenEntries = HashMap<[u8; 32], (Instant, Uuid, Role)>;

#[derive(Clone, Default)]
pub struct TokenCache {
    entries: Arc<Mutex<TokenEntries>>,
}

impl TokenCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, TokenEntries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, hash: &[u8; 32]) -> Option<(Uuid, Role)> {
        self.lock().get(hash).filter(|(at, _, _)| at.elapsed() < TOKEN_TTL).map(|(_, ws, role)| (*ws, *role))
    }

    fn put(&self, hash: [u8; 32], workspace_id: Uuid, role: Role) {
        self.lock().insert(hash, (Instant::now(), workspace_id, role));
    }

    pub fn remove(&self, hash: &[u8]) {
        if let Ok(hash) = <[u8; 32]>::try_from(hash) {
            self.lock().remove(&hash);
        }
    }

    pub fn clear(&self) {
        self.lock().clear();
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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        let hash = hash_token(token);
        let (workspace_id, role) = match state.tokens.get(&hash) {
            Some(known) => known,
            None => {
                let found =
                    crate::repo::workspaces::token_by_hash(&state.pool, &hash).await?.ok_or(ApiError::Unauthorized)?;
                state.tokens.put(hash, found.workspace_id, found.role);
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
    fn tokens_are_unique_and_only_their_hash_matches() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a.plaintext, b.plaintext);
        assert!(a.plaintext.starts_with("crm_") && a.plaintext.len() > 40);
        assert_eq!(hash_token(&a.plaintext), a.hash);
        assert_ne!(a.hash, b.hash);
    }
}
