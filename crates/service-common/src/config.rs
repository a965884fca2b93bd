//! The configuration both services read (docs/contract.md §1).
//!
//! Variables are read once, at start, through [`Env`] — a lookup function rather than the process environment —
//! so tests can build any number of configurations side by side without `env::set_var`. A missing or malformed
//! variable is one [`ConfigError`] whose message names it.

use crate::crypto::SecretKeyring;
use egress::EgressPolicy;
use secrecy::SecretString;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where configuration values come from: the process environment in production, a map in tests.
pub struct Env {
    lookup: Lookup,
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Env { lookup: Box::new(|name| std::env::var(name).ok()) }
    }

    /// A fixed set of values (tests).
    pub fn from_map(map: HashMap<String, String>) -> Self {
        Env { lookup: Box::new(move |name| map.get(name).cloned()) }
    }

    /// The value of `name`; an empty value counts as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::missing(name))
    }

    pub fn or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    /// Parses `name` with `FromStr`, or returns `default` when unset.
    pub fn parse_or<T: FromStr>(&self, name: &'static str, default: T, expected: &str) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|_| ConfigError::invalid(name, format!("expected {expected}"))),
        }
    }

    pub fn bool_or(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
            Some(_) => Err(ConfigError::invalid(name, "expected true or false")),
        }
    }

    /// A duration given in milliseconds.
    pub fn millis_or(&self, name: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parse_or(name, default_ms, "a whole number of milliseconds")?;
        if ms == 0 {
            return Err(ConfigError::invalid(name, "must be greater than 0"));
        }
        Ok(Duration::from_millis(ms))
    }
}

/// A bad configuration: which variable, and what is wrong with it. Displayed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn missing(variable: &'static str) -> Self {
        ConfigError { variable, problem: "is required but not set".into() }
    }

    pub fn invalid(variable: &'static str, problem: impl Into<String>) -> Self {
        ConfigError { variable, problem: problem.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {} {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// The variables both services read.
#[derive(Clone)]
pub struct CommonConfig {
    pub database_url: SecretString,
    pub nats_url: String,
    pub secret_keys: SecretKeyring,
    pub stream: String,
    pub subject_prefix: String,
    /// `CRM_STREAM_REPLICAS` (default 1): the stream's replica count; 3 on a clustered JetStream.
    pub stream_replicas: usize,
    pub egress: EgressPolicy,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; tracing export is off when unset.
    pub otlp_endpoint: Option<String>,
}

impl fmt::Debug for CommonConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommonConfig")
            .field("database_url", &"[redacted]")
            .field("nats_url", &self.nats_url)
            .field("secret_keys", &self.secret_keys)
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .finish_non_exhaustive()
    }
}

impl CommonConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let database_url = env.required("DATABASE_URL")?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError::invalid("DATABASE_URL", "must be a postgres:// URL"));
        }
        let nats_url = env.or("NATS_URL", "nats://127.0.0.1:4222");
        check_nats_url(&nats_url)?;
        let secret_keys = SecretKeyring::from_env_values(
            &env.required("CRM_SECRET_KEY")?,
            env.get("CRM_SECRET_KEY_PREVIOUS").as_deref(),
        )?;
        let stream = env.or("CRM_STREAM", crm_events::DEFAULT_STREAM);
        if stream.is_empty() || stream.chars().any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\')) {
            return Err(ConfigError::invalid("CRM_STREAM", "must be a name without spaces, '.', '*', '>' or slashes"));
        }
        let subject_prefix = env.or("CRM_SUBJECT_PREFIX", crm_events::DEFAULT_SUBJECT_PREFIX);
        if subject_prefix
            .split('.')
            .any(|token| token.is_empty() || token.chars().any(|c| c.is_whitespace() || matches!(c, '*' | '>')))
        {
            return Err(ConfigError::invalid(
                "CRM_SUBJECT_PREFIX",
                "must be dot-separated subject tokens without spaces or wildcards",
            ));
        }
        let stream_replicas: usize = env.parse_or("CRM_STREAM_REPLICAS", 1, "1, 3 or 5")?;
        if !matches!(stream_replicas, 1 | 3 | 5) {
            return Err(ConfigError::invalid("CRM_STREAM_REPLICAS", "must be 1, 3 or 5"));
        }
        let egress = EgressPolicy::from_settings(
            env.get("CRM_EGRESS_ALLOW_HTTP").as_deref(),
            env.get("CRM_EGRESS_ALLOW_CIDRS").as_deref(),
        )
        .map_err(|e| {
            let text = e.to_string();
            let problem = text.strip_prefix(e.variable()).map(|p| p.trim_start_matches(':').trim()).unwrap_or(&text);
            ConfigError::invalid(e.variable(), problem.to_owned())
        })?;
        Ok(CommonConfig {
            database_url: SecretString::from(database_url),
            nats_url,
            secret_keys,
            stream,
            subject_prefix,
            stream_replicas,
            egress,
            otlp_endpoint: env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        })
    }

    pub fn subjects(&self) -> crm_events::Subjects {
        crm_events::Subjects::new(self.subject_prefix.clone())
    }
}

/// `NATS_URL`: one or more comma-separated `nats://`, `tls://` (or scheme-less `host:port`) server addresses.
fn check_nats_url(value: &str) -> Result<(), ConfigError> {
    for server in value.split(',').map(str::trim) {
        let rest = server.strip_prefix("nats://").or_else(|| server.strip_prefix("tls://")).unwrap_or(server);
        let hostport = rest.rsplit('@').next().unwrap_or(rest);
        let valid = match hostport.rsplit_once(':') {
            Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
            None => !hostport.is_empty() && !hostport.contains('/'),
        };
        if server.contains("://") && !(server.starts_with("nats://") || server.starts_with("tls://")) || !valid {
            return Err(ConfigError::invalid(
                "NATS_URL",
                "must be nats://host:port (comma-separated for several servers)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn key() -> String {
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    }

    #[test]
    fn minimal_config_takes_the_documented_defaults() {
        let k = key();
        let cfg = CommonConfig::from_env(&env(&[("DATABASE_URL", "postgres://x/y"), ("CRM_SECRET_KEY", &k)])).unwrap();
        assert_eq!(cfg.nats_url, "nats://127.0.0.1:4222");
        for good in ["nats://a:4222", "tls://a:4222,nats://b:4223", "127.0.0.1:4222", "nats://user:pw@host:4222"] {
            assert!(check_nats_url(good).is_ok(), "{good}");
        }
        assert_eq!(cfg.stream, "CRM_EVENTS");
        assert_eq!(cfg.subject_prefix, "crm");
        assert_eq!(cfg.stream_replicas, 1);
        assert!(!cfg.egress.allows_http());
    }

    #[test]
    fn each_bad_variable_is_named_in_one_line() {
        let k = key();
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("CRM_SECRET_KEY", &k)], "DATABASE_URL"),
            (vec![("DATABASE_URL", "mysql://x"), ("CRM_SECRET_KEY", &k)], "DATABASE_URL"),
            (vec![("DATABASE_URL", "postgres://x")], "CRM_SECRET_KEY"),
            (vec![("DATABASE_URL", "postgres://x"), ("CRM_SECRET_KEY", "c2hvcnQ=")], "CRM_SECRET_KEY"),
            (vec![("DATABASE_URL", "postgres://x"), ("CRM_SECRET_KEY", &k), ("CRM_STREAM", "a.b")], "CRM_STREAM"),
            (
                vec![("DATABASE_URL", "postgres://x"), ("CRM_SECRET_KEY", &k), ("CRM_SUBJECT_PREFIX", "a.*")],
                "CRM_SUBJECT_PREFIX",
            ),
            (
                vec![("DATABASE_URL", "postgres://x"), ("CRM_SECRET_KEY", &k), ("CRM_EGRESS_ALLOW_CIDRS", "nope")],
                "CRM_EGRESS_ALLOW_CIDRS",
            ),
            (
                vec![("DATABASE_URL", "postgres://x"), ("CRM_SECRET_KEY", &k), ("CRM_EGRESS_ALLOW_HTTP", "maybe")],
                "CRM_EGRESS_ALLOW_HTTP",
            ),
            (vec![("DATABASE_URL", "postgres://x"), ("CRM_SECRET_KEY", &k), ("NATS_URL", "http://x:4222")], "NATS_URL"),
            (
                vec![("DATABASE_URL", "postgres://x"), ("CRM_SECRET_KEY", &k), ("CRM_STREAM_REPLICAS", "2")],
                "CRM_STREAM_REPLICAS",
            ),
            (
                vec![("DATABASE_URL", "postgres://x"), ("CRM_SECRET_KEY", &k), ("NATS_URL", "nats://x:notaport")],
                "NATS_URL",
            ),
        ];
        for (pairs, variable) in cases {
            let err = CommonConfig::from_env(&env(&pairs)).unwrap_err();
            assert_eq!(err.variable, variable, "{err}");
            let line = err.to_string();
            assert!(line.contains(variable) && !line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn millis_and_bools_are_checked() {
        let e = env(&[("A", "0"), ("B", "x"), ("C", "yes")]);
        assert!(e.millis_or("A", 5).is_err());
        assert!(e.millis_or("B", 5).is_err());
        assert_eq!(e.millis_or("Z", 5).unwrap(), Duration::from_millis(5));
        assert!(e.bool_or("C", false).unwrap());
        assert!(e.bool_or("B", false).is_err());
    }
}
