//! delivery-worker's configuration (docs/contract.md §1): the common variables plus its own. Defaults are documented in
//! the README's configuration table.

use crate::retry::RetryPolicy;
use service_common::{CommonConfig, ConfigError, Env};
use std::net::SocketAddr;
use std::time::Duration;

/// The retry schedule spans at least this long by default (the default schedule must cover at least 24 h: docs/contract.md §4, "Retries").
pub const DEFAULT_RETRY_SPAN: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub common: CommonConfig,
    /// `WORKER_ADDR`: health and metrics only.
    pub addr: SocketAddr,
    /// `WORKER_CONCURRENCY` (default 64): deliveries in flight in this process, and the most one endpoint's
    /// adaptive limit can reach.
    pub concurrency: usize,
    /// `WORKER_BUFFER` (default `4 × WORKER_CONCURRENCY`, at least 256): messages held in this process, queued for
    /// their endpoint or in flight. Nothing more is pulled while it is full.
    pub buffer: usize,
    /// `CRM_WEBHOOK_TIMEOUT_MS` (default 10000): connect and response, per request.
    pub timeout: Duration,
    /// `CRM_WEBHOOK_RETRY_BASE_MS` (5000), `CRM_WEBHOOK_RETRY_MAX_MS` (3600000), `CRM_WEBHOOK_MAX_ATTEMPTS`
    /// (enough attempts that the schedule spans 24 h: 34 with the default base and cap).
    pub retry: RetryPolicy,
    /// `WORKER_ACK_WAIT_MS` (default 30000): the consumer's ack wait; in-progress acks go out at a third of it.
    pub ack_wait: Duration,
    /// `WORKER_SHUTDOWN_GRACE_MS` (default 20000): how long SIGTERM waits for deliveries in flight.
    pub shutdown_grace: Duration,
    /// `CRM_ENDPOINT_PAUSE_AFTER` (default 5): consecutive retryable failures that pause an endpoint.
    pub pause_after_failures: u32,
    /// `CRM_ENDPOINT_PAUSE_MS` (default 30000): the first pause; it doubles on each failed probe, up to 10 min.
    pub pause: Duration,
    /// `WORKER_DB_MAX_CONNECTIONS` (default 16).
    pub db_max_connections: u32,
}

impl WorkerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env)?;
        let addr = env.parse_or(
            "WORKER_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 9090)),
            "a socket address such as 127.0.0.1:9090",
        )?;
        let concurrency: usize = env.parse_or("WORKER_CONCURRENCY", 64, "a number from 1 to 10000")?;
        if !(1..=10_000).contains(&concurrency) {
            return Err(ConfigError::invalid("WORKER_CONCURRENCY", "must be from 1 to 10000"));
        }
        let buffer: usize = env.parse_or(
            "WORKER_BUFFER",
            (4 * concurrency).clamp(256, 40_000),
            "a number from WORKER_CONCURRENCY to 100000",
        )?;
        if !(concurrency..=100_000).contains(&buffer) {
            return Err(ConfigError::invalid("WORKER_BUFFER", "must be from WORKER_CONCURRENCY to 100000"));
        }
        let timeout = env.millis_or("CRM_WEBHOOK_TIMEOUT_MS", 10_000)?;
        let base = env.millis_or("CRM_WEBHOOK_RETRY_BASE_MS", 5_000)?;
        let cap = env.millis_or("CRM_WEBHOOK_RETRY_MAX_MS", 3_600_000)?;
        if cap < base {
            return Err(ConfigError::invalid(
                "CRM_WEBHOOK_RETRY_MAX_MS",
                "must not be below CRM_WEBHOOK_RETRY_BASE_MS",
            ));
        }
        // A tiny base and cap would need more attempts than the limit allows: the default stops at the limit.
        let default_attempts = RetryPolicy::attempts_to_cover(base, cap, DEFAULT_RETRY_SPAN).min(1000);
        let max_attempts: u32 =
            env.parse_or("CRM_WEBHOOK_MAX_ATTEMPTS", default_attempts, "a number from 1 to 1000")?;
        if !(1..=1000).contains(&max_attempts) {
            return Err(ConfigError::invalid("CRM_WEBHOOK_MAX_ATTEMPTS", "must be from 1 to 1000"));
        }
        let ack_wait = env.millis_or("WORKER_ACK_WAIT_MS", 30_000)?;
        if ack_wait < Duration::from_secs(1) {
            return Err(ConfigError::invalid("WORKER_ACK_WAIT_MS", "must be at least 1000"));
        }
        let pause_after_failures: u32 = env.parse_or("CRM_ENDPOINT_PAUSE_AFTER", 5, "a number from 1 to 1000")?;
        if !(1..=1000).contains(&pause_after_failures) {
            return Err(ConfigError::invalid("CRM_ENDPOINT_PAUSE_AFTER", "must be from 1 to 1000"));
        }
        let db_max_connections: u32 = env.parse_or("WORKER_DB_MAX_CONNECTIONS", 16, "a number from 2 to 1000")?;
        if !(2..=1000).contains(&db_max_connections) {
            return Err(ConfigError::invalid("WORKER_DB_MAX_CONNECTIONS", "must be from 2 to 1000"));
        }
        Ok(WorkerConfig {
            common,
            addr,
            concurrency,
            buffer,
            timeout,
            retry: RetryPolicy { base, cap, max_attempts },
            ack_wait,
            shutdown_grace: env.millis_or("WORKER_SHUTDOWN_GRACE_MS", 20_000)?,
            pause_after_failures,
            pause: env.millis_or("CRM_ENDPOINT_PAUSE_MS", 30_000)?,
            db_max_connections,
        })
    }
}
