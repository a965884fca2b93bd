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
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

mod cache;

pub use cache::{RevocationWatch, TokenCache};

/// A workspace token's role. Roles nest: `editor` can do what `viewer` can, `admin` what `editor` can.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
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
    /// Re-queue the deliveries of a time range at once (bulk recovery).
    RecoverDeliveries,
    /// Lift a paused or system-disabled endpoint now.
    ResumeEndpoint,
}

impl Capability {
    /// The least role that grants it.
    pub fn minimum_role(self) -> Role {
        match self {
            Capability::ReadRows | Capability::ReadSettings | Capability::ReadDeliveries => Role::Viewer,
            Capability::RecordInterest | Capability::EditRows => Role::Editor,
            Capability::WriteSettings
            | Capability::SendTestEvent
            | Capability::Redeliver
            | Capability::RecoverDeliveries
            | Capability::ResumeEndpoint => Role::Admin,
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
            Capability::RecoverDeliveries => "deliveries:recover",
            Capability::ResumeEndpoint => "webhook:resume",
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

    markers!(
        ReadRows,
        ReadSettings,
        ReadDeliveries,
        RecordInterest,
        EditRows,
        WriteSettings,
        SendTestEvent,
        Redeliver,
        RecoverDeliveries,
        ResumeEndpoint,
    );
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
        assert!(!Role::Editor.grants(Capability::RecoverDeliveries));
        assert!(!Role::Editor.grants(Capability::ResumeEndpoint));
        assert!(Role::Admin.grants(Capability::RecoverDeliveries) && Role::Admin.grants(Capability::ResumeEndpoint));
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
