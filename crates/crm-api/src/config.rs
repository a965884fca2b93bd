//! crm-api's configuration (docs/contract.md §1): the common variables plus its own.

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
    /// `CRM_API_REQUEST_TIMEOUT_MS` (default 60000, longer than the body's limit): an API request still unanswered
    /// after this is answered 503 and gives its slot back.
    pub request_timeout: Duration,
    /// `CRM_API_HEADER_TIMEOUT_MS` (default 30000): a client must send a whole request head within this. The clock
    /// starts when the server is ready for the next request, so it also closes keep-alive connections idle this
    /// long.
    pub header_read_timeout: Duration,
    /// `CRM_API_BODY_TIMEOUT_MS` (default 10000): a client must send its whole body within this once the handler
    /// (after authorisation) starts reading it; otherwise 408.
    pub body_read_timeout: Duration,
    /// `CRM_DELIVERY_RETENTION_DAYS` (default 30, 1 to 3650): ended deliveries last updated longer ago than this
    /// are pruned from the delivery log (see [`crate::retention`]).
    pub delivery_retention: Duration,
    /// `CRM_API_WRITERS` (default 2, 1 to 16): writer tasks committing batches of row changes; with two, one
    /// batch gathers while the other commits.
    pub writers: usize,
    pub relay: RelayConfig,
    /// `CRM_RECOVERY_BATCH` (default 200, 1 to 5000) and `CRM_RECOVERY_INTERVAL_MS` (default 1000): how fast bulk
    /// recoveries re-queue deliveries, at most (see [`crate::recovery`]).
    pub recovery: crate::recovery::RecoveryPacing,
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
        let header_read_timeout = env.millis_or("CRM_API_HEADER_TIMEOUT_MS", 30_000)?;
        let body_read_timeout = env.millis_or("CRM_API_BODY_TIMEOUT_MS", 10_000)?;
        for (name, value) in
            [("CRM_API_HEADER_TIMEOUT_MS", header_read_timeout), ("CRM_API_BODY_TIMEOUT_MS", body_read_timeout)]
        {
            if value.is_zero() {
                return Err(ConfigError::invalid(name, "must be at least 1 millisecond"));
            }
        }
        let request_timeout = env.millis_or("CRM_API_REQUEST_TIMEOUT_MS", 60_000)?;
        if request_timeout <= body_read_timeout {
            // A body that trickles must meet the body's limit (408) before the request's (503).
            return Err(ConfigError::invalid(
                "CRM_API_REQUEST_TIMEOUT_MS",
                "must be longer than CRM_API_BODY_TIMEOUT_MS",
            ));
        }
        let writers: usize = env.parse_or("CRM_API_WRITERS", 2, "a number from 1 to 16")?;
        if !(1..=16).contains(&writers) {
            return Err(ConfigError::invalid("CRM_API_WRITERS", "must be from 1 to 16"));
        }
        let retention_days: u64 =
            env.parse_or("CRM_DELIVERY_RETENTION_DAYS", 30, "a whole number of days from 1 to 3650")?;
        if !(1..=3650).contains(&retention_days) {
            return Err(ConfigError::invalid("CRM_DELIVERY_RETENTION_DAYS", "must be from 1 to 3650 days"));
        }
        let recovery_batch: i64 = env.parse_or("CRM_RECOVERY_BATCH", 200, "a number from 1 to 5000")?;
        if !(1..=5000).contains(&recovery_batch) {
            return Err(ConfigError::invalid("CRM_RECOVERY_BATCH", "must be from 1 to 5000"));
        }
        let recovery_interval = env.millis_or("CRM_RECOVERY_INTERVAL_MS", 1000)?;
        Ok(ApiConfig {
            common,
            delivery_retention: Duration::from_secs(retention_days * 24 * 60 * 60),
            header_read_timeout,
            body_read_timeout,
            max_in_flight,
            request_timeout,
            addr,
            admin_token,
            migrate_on_start: env.bool_or("CRM_MIGRATE_ON_START", true)?,
            db_max_connections,
            writers,
            relay: RelayConfig { batch_size, poll_interval: env.millis_or("CRM_RELAY_POLL_MS", 1000)? },
            recovery: crate::recovery::RecoveryPacing { batch: recovery_batch, interval: recovery_interval },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(retention: Option<&str>) -> Result<ApiConfig, ConfigError> {
        config_with(retention.map(|value| ("CRM_DELIVERY_RETENTION_DAYS", value)))
    }

    fn config_with(extra: Option<(&str, &str)>) -> Result<ApiConfig, ConfigError> {
        let mut map = HashMap::from([
            ("DATABASE_URL".to_owned(), "postgres://localhost/crm".to_owned()),
            ("CRM_SECRET_KEY".to_owned(), "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=".to_owned()),
        ]);
        if let Some((name, value)) = extra {
            map.insert(name.to_owned(), value.to_owned());
        }
        ApiConfig::from_env(&Env::from_map(map))
    }

    #[test]
    fn recovery_pacing_has_defaults_and_bounds() {
        let pacing = config(None).unwrap().recovery;
        assert_eq!((pacing.batch, pacing.interval), (200, Duration::from_secs(1)));
        assert_eq!(config_with(Some(("CRM_RECOVERY_BATCH", "5000"))).unwrap().recovery.batch, 5000);
        for (name, raw) in
            [("CRM_RECOVERY_BATCH", "0"), ("CRM_RECOVERY_BATCH", "5001"), ("CRM_RECOVERY_INTERVAL_MS", "0")]
        {
            assert_eq!(config_with(Some((name, raw))).unwrap_err().variable, name, "{name}={raw}");
        }
    }

    #[test]
    fn the_request_timeout_defaults_to_60_s_and_outlasts_the_bodys() {
        assert_eq!(config(None).unwrap().request_timeout, Duration::from_secs(60));
        let set = config_with(Some(("CRM_API_REQUEST_TIMEOUT_MS", "12500"))).unwrap();
        assert_eq!(set.request_timeout, Duration::from_millis(12500));
        for raw in ["0", "10000"] {
            let refused = config_with(Some(("CRM_API_REQUEST_TIMEOUT_MS", raw))).unwrap_err();
            assert_eq!(refused.variable, "CRM_API_REQUEST_TIMEOUT_MS", "{raw}");
        }
    }

    const DAY: u64 = 24 * 60 * 60;

    #[test]
    fn delivery_retention_defaults_to_30_days() {
        assert_eq!(config(None).unwrap().delivery_retention, Duration::from_secs(30 * DAY));
        assert_eq!(config(Some("")).unwrap().delivery_retention, Duration::from_secs(30 * DAY));
    }

    #[test]
    fn delivery_retention_takes_1_to_3650_days() {
        for (raw, days) in [("1", 1), (" 7 ", 7), ("90", 90), ("3650", 3650)] {
            assert_eq!(config(Some(raw)).unwrap().delivery_retention, Duration::from_secs(days * DAY), "{raw:?}");
        }
    }

    #[test]
    fn malformed_delivery_retention_is_one_line_naming_the_variable() {
        for raw in ["0", "3651", "-1", "30d", "1.5", "thirty", "99999999999999999999"] {
            let err = config(Some(raw)).unwrap_err();
            assert_eq!(err.variable, "CRM_DELIVERY_RETENTION_DAYS", "{raw:?}");
            let shown = err.to_string();
            assert!(shown.contains("CRM_DELIVERY_RETENTION_DAYS") && !shown.contains('\n'), "{shown}");
        }
    }
}
