//! Service plumbing shared by `crm-api` and `delivery-worker`.
//!
//! Everything both processes need and neither owns: the common part of their configuration, the keyring that
//! encrypts webhook secrets at rest, telemetry set-up, the shutdown signal, the health and metrics routes, and the
//! PostgreSQL and NATS connections with the stream definition. Each service builds on it; neither depends on the
//! other.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod health;
pub mod metrics;
pub mod nats;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
pub mod trace;

pub use config::{CommonConfig, ConfigError, Env};
pub use crypto::SecretKeyring;
