//! What the operator's admin API accepts: workspaces and their tokens.

use super::input::{name, Validator};
use crate::auth::Role;
use crate::error::ApiError;
use serde::Deserialize;

/// The longest workspace or token name.
const MAX_NAME_CHARS: usize = 200;

/// `POST /admin/workspaces` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkspaceCreate)]
pub struct CreateWorkspace {
    /// Trimmed, 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
}

impl CreateWorkspace {
    /// The workspace's name.
    pub fn validate(self) -> Result<String, ApiError> {
        let mut v = Validator::default();
        let name = v.check("name", name(self.name, MAX_NAME_CHARS));
        v.finish()?;
        Ok(name.unwrap_or_default())
    }
}

/// `POST /admin/workspaces/{ws}/tokens` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TokenCreate)]
pub struct CreateToken {
    #[schema(value_type = Role)]
    role: String,
    /// A label for the token; trimmed, 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
}

impl CreateToken {
    /// The token's role and name.
    pub fn validate(self) -> Result<(Role, String), ApiError> {
        let mut v = Validator::default();
        let role = v.check("role", self.role.parse().map_err(|()| "must be one of viewer, editor, admin".into()));
        let name = v.check("name", name(self.name, MAX_NAME_CHARS));
        v.finish()?;
        Ok((role.unwrap_or(Role::Viewer), name.unwrap_or_default()))
    }
}
