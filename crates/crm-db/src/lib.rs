//! The database crm-api and delivery-worker share, as both must spell it.
//!
//! crm-api owns rows, settings, tokens and the outbox; the worker owns the delivery log; crm-api reads the log
//! back. What both sides must agree on lives here, once: the migrations (`migrations/` at the top of the
//! repository, embedded at build time), the `LISTEN`/`NOTIFY` channels, and the values stored in text columns
//! that both read or write (a delivery's status, why a delivery was skipped). No connection handling: that is
//! `service-common`'s.

mod status;

pub use status::{DeliveryStatus, SkipReason, UnknownValue};

/// The migrations, embedded at build time. `crm-api migrate` (and `crm-api serve`, unless told not to) applies
/// them; the worker never does.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Applies pending migrations.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// The `LISTEN`/`NOTIFY` channels. Notifications are wake-ups and cache invalidations, never the only copy of a
/// fact: a listener that was away treats its reconnection as "anything may have changed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Sent with an outbox insert that is not crm-api's writers' (a test event, a redelivery, a re-driven parked
    /// event): wakes the relays. The writers wake their own process's relay directly.
    Outbox,
    /// Payload: a workspace id whose webhook settings changed. Workers drop their cached copy.
    Settings,
    /// Payload: the hex SHA-256 of a revoked token. crm-api replicas drop it from their token cache.
    Tokens,
    /// Payload: a workspace id whose endpoint an operator resumed. Workers lift their breaker's pause and any
    /// `Retry-After` hold for it, so its next delivery goes at once.
    EndpointResume,
}

impl Channel {
    pub const fn name(self) -> &'static str {
        match self {
            Channel::Outbox => "crm_outbox",
            Channel::Settings => "crm_settings",
            Channel::Tokens => "crm_tokens",
            Channel::EndpointResume => "crm_endpoint_resume",
        }
    }
}
