//! SQL, one module per table group. Functions take a connection or a transaction, so a caller decides what
//! commits together; flows that must be atomic (a row change and its outbox event) take a transaction.

pub mod batch;
pub mod deliveries;
pub mod endpoint;
pub mod idempotency;
pub mod outbox;
pub mod recoveries;
pub mod rows;
pub mod settings;
pub mod stats;
pub mod workspaces;

/// The database's clock: the one that writes every `now()` the queries compare with.
pub async fn now(db: impl sqlx::PgExecutor<'_>) -> Result<chrono::DateTime<chrono::Utc>, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT now() AS "now!""#).fetch_one(db).await
}

/// Whether `e` is a violation of the named unique constraint (or unique index).
pub fn is_unique_violation(e: &sqlx::Error, constraint: &str) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_unique_violation() && db.constraint() == Some(constraint),
        _ => false,
    }
}
