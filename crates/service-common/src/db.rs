//! The PostgreSQL pool and the embedded migrations (`migrations/` at the top of the repository).

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// The migrations every service shares, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Opens a pool. Connections are made on demand, so a PostgreSQL restart heals by itself: a failed query returns
/// an error to its caller and the next acquire reconnects.
pub async fn connect(url: &SecretString, max_connections: u32, application: &str) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url.expose_secret())?.application_name(application);
    pool_options(max_connections).connect_with(options).await
}

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new().max_connections(max_connections).min_connections(1).acquire_timeout(Duration::from_secs(5))
}

/// Opens a pool whose commits do not wait for the WAL flush (`synchronous_commit = off`). Only for writes whose
/// loss in a PostgreSQL crash is harmless because they are redone: a later synchronous commit on the same server
/// flushes them anyway, and a lost one only repeats work (a delivery claimed again, an event republished).
pub async fn connect_async_commit(
    url: &SecretString,
    max_connections: u32,
    application: &str,
) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url.expose_secret())?
        .application_name(application)
        .options([("synchronous_commit", "off")]);
    pool_options(max_connections).connect_with(options).await
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
