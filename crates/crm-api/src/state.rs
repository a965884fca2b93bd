//! What every handler can reach.

use crate::metrics::ApiMetrics;
use crm_events::Subjects;
use egress::EgressPolicy;
use service_common::SecretKeyring;
use sqlx::PgPool;
use std::sync::Arc;

/// What every handler can reach. axum hands each request's extractors a clone of it, so everything lives behind one
/// `Arc`: a clone is one reference count, not a copy of every field (the egress allow-list, the subject prefix)
/// and a count on each of the dozens of shared handles inside.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    pub fn new(inner: AppStateInner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct AppStateInner {
    pub pool: PgPool,
    pub keyring: SecretKeyring,
    pub egress: EgressPolicy,
    pub subjects: Subjects,
    /// SHA-256 of `CRM_ADMIN_TOKEN`; `None` turns the admin API off.
    pub admin_token_hash: Option<[u8; 32]>,
    pub metrics: ApiMetrics,
    pub tokens: crate::auth::TokenCache,
    /// How long a client may take to send a request body (`CRM_API_BODY_TIMEOUT_MS`).
    pub body_read_timeout: std::time::Duration,
    /// Commits row changes, many together.
    pub writer: crate::service::writer::Writer,
    /// Wakes this replica's recovery task (a recovery was started here).
    pub recovery_wake: std::sync::Arc<tokio::sync::Notify>,
}
