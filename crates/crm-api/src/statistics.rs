//! Planner statistics for `crm_rows` while it grows faster than autovacuum looks at it.
//!
//! The writers find a lead by `(workspace_id, lower(email))`, and two indexes lead with the workspace: the unique
//! one on the email and the list's `(workspace_id, id DESC)`. On a table PostgreSQL has never analysed, the two cost
//! the same to the planner, and it can take the list's index and read every row of the workspace for each lookup.
//! With one busy workspace on a brand-new database that made each batch read of the writers take 45 ms on average
//! and up to 1.5 s, and the API shed most of the load with 503 until autovacuum analysed the table, which it does
//! at most once a minute (`autovacuum_naptime`) and only after 10% of the table changed.
//!
//! So crm-api looks every second ([`keep_current`]) and runs `ANALYZE crm_rows` itself when the table has changed
//! at least [`MIN_CHANGES`] times since its last statistics and at least as often as it had rows then: a new table
//! is analysed within about a second of its first few hundred rows, a growing one whenever it has doubled. Once
//! the table is large, doubling takes long and autovacuum's own analyses come first, so this costs one catalog
//! read a second.

use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Fewest changes since the last statistics that make an `ANALYZE` worth it.
pub const MIN_CHANGES: i64 = 500;
/// How often the change count is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Analyses `crm_rows` if it has changed at least [`MIN_CHANGES`] times, and at least as often as it had rows, since
/// its last statistics (or since it was created). Says whether it did.
///
/// The change count is PostgreSQL's cumulative statistics (`n_mod_since_analyze`), which each connection reports
/// at most once a second, so it lags the writes by about that much.
pub async fn analyze_if_grown(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let (rows, changed): (f64, i64) = sqlx::query_as(
        "SELECT c.reltuples::float8, s.n_mod_since_analyze
           FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
          WHERE c.oid = 'crm_rows'::regclass",
    )
    .fetch_one(pool)
    .await?;
    // `reltuples` is -1 until the table is first vacuumed or analysed.
    if changed < MIN_CHANGES || (changed as f64) < rows.max(0.0) {
        return Ok(false);
    }
    sqlx::query("ANALYZE crm_rows").execute(pool).await?;
    tracing::info!(changed, rows_before = rows.max(0.0), "crm_rows analysed: it changed faster than its statistics");
    Ok(true)
}

/// Runs [`analyze_if_grown`] every second until `shutdown`.
pub async fn keep_current(pool: PgPool, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = analyze_if_grown(&pool).await {
            tracing::debug!(error = %e, "checking crm_rows' statistics failed; will retry");
        }
    }
}
