//! crm-api's configuration (CONTRACT §1): the common variables plus its own.

use secrecy::SecretString;
use service_common::{CommonConfig, ConfigError, Env};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub common: CommonConfig,
    /// `CRM_API_ADDR`; port 0 picks a free port (tests).
    pub addr: SocketAddr,
    /// `CRM_ADMIN_TOKEN`; the admin API is off when unset.
    pub admin_token: Option<SecretString>,
    /// `CRM_MIGRATE_ON_START` (default true).
    pub migrate_on_start: bool,
    /// `CRM_DB_MAX_CONNECTIONS` (default 16).
    pub db_max_connections: u32,
    /// `CRM_API_MAX_IN_FLIGHT` (default 512): API requests served at once; the excess is answered 503 with
    /// `Retry-After` at once instead of queueing without bound.
    pub max_in_flight: usize,
    pub relay: RelayConfig,
}

/// How the outbox relay batches and polls.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// `CRM_RELAY_BATCH` (default 500): events per publish-and-mark transaction. Kept below the JetStream
    /// context's in-flight ack limit.
    pub batch_size: i64,
    /// `CRM_RELAY_POLL_MS` (default 1000): the polling fallback when no notification arrives.
    pub poll_interval: Duration,
}

impl ApiConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env)?;
        let addr = env.parse_or(
            "CRM_API_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            "a socket address such as 127.0.0.1:8080",
        )?;
        let admin_token = env.get("CRM_ADMIN_TOKEN").map(SecretString::from);
        if let Some(token) = &admin_token {
            use secrecy::ExposeSecret;
            if token.expose_secret().len() < 16 {
                return Err(ConfigError::invalid("CRM_ADMIN_TOKEN", "must be at least 16 characters"));
            }
        }
        let batch_size: i64 = env.parse_or("CRM_RELAY_BATCH", 500, "a number from 1 to 4000")?;
        if !(1..=4000).contains(&batch_size) {
            return Err(ConfigError::invalid("CRM_RELAY_BATCH", "must be from 1 to 4000"));
        }
        let db_max_connections: u32 = env.parse_or("CRM_DB_MAX_CONNECTIONS", 16, "a number from 2 to 1000")?;
        if !(2..=1000).contains(&db_max_connections) {
            return Err(ConfigError::invalid("CRM_DB_MAX_CONNECTIONS", "must be from 2 to 1000"));
        }
        let max_in_flight: usize = env.parse_or("CRM_API_MAX_IN_FLIGHT", 512, "a number from 1 to 100000")?;
        if !(1..=100_000).contains(&max_in_flight) {
            return Err(ConfigError::invalid("CRM_API_MAX_IN_FLIGHT", "must be from 1 to 100000"));
        }
        Ok(ApiConfig {
            common,
            max_in_flight,
            addr,
            admin_token,
            migrate_on_start: env.bool_or("CRM_MIGRATE_ON_START", true)?,
            db_max_connections,
            relay: RelayConfig { batch_size, poll_interval: env.millis_or("CRM_RELAY_POLL_MS", 1000)? },
        })
    }
}
