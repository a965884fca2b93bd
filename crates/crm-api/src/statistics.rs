//! Planner statistics for `crm_rows` while it grows faster than autovacuum looks at it.
//!
//! The writers find a lead by `(workspace_id, lower(email))`, and two indexes lead with the workspace: the unique
//! one on the email and the list's `(workspace_id, id DESC)`. On a table PostgreSQL has never analysed, the two cost
//! the same to the planner, and it can take the list's index and read every row of the workspace for each lookup.
//! With one busy workspace on a brand-new database that made each batch read of the writers take 45 ms on average
//! and up to 1.5 s, and the API shed most of the load with 503 until autovacuum analysed the table, which it does
//! at most once a minute (`autovacuum_naptime`) and only after 10% of the table changed.
//!
//! So crm-api looks four times a second ([`keep_current`]) and runs `ANALYZE crm_rows` itself when the table's
//! file has at least [`MIN_PAGES`] pages and at least twice as many as at its last statistics (`relpages`): a new
//! table is analysed a fraction of a second after its first hundred or so rows, a growing one whenever it has
//! doubled. The file's size is read from the file system, so it is current, where PostgreSQL's change counters
//! (`n_mod_since_analyze`) lag the writes by a second or more, in which a busy workspace writes thousands of rows
//! through the wrong plan. Once the table is large, doubling takes long and autovacuum's own analyses come first,
//! so this costs a catalog read every 250 ms.

use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Smallest table, in pages, worth an `ANALYZE` (8 KiB pages: a hundred or more leads).
pub const MIN_PAGES: i64 = 8;
/// How often the table's size is looked at.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// What [`analyze_if_grown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analysis {
    /// The statistics still fit the table.
    NotNeeded,
    /// The table was analysed.
    Done,
    /// PostgreSQL skipped the `ANALYZE` (with a warning, not an error): this role does not own the table.
    NotPermitted,
}

/// `crm_rows`' size in pages now, and at its last statistics (`relpages`).
pub async fn pages(pool: &PgPool) -> Result<(i64, i32), sqlx::Error> {
    sqlx::query_as(
        "SELECT pg_relation_size(oid) / current_setting('block_size')::int8, relpages
           FROM pg_class WHERE oid = 'crm_rows'::regclass",
    )
    .fetch_one(pool)
    .await
}

/// Analyses `crm_rows` if its file has at least [`MIN_PAGES`] pages and at least twice the pages it had at its last
/// statistics (none, for a table never analysed).
pub async fn analyze_if_grown(pool: &PgPool) -> Result<Analysis, sqlx::Error> {
    let (pages_now, pages_then) = pages(pool).await?;
    if pages_now < MIN_PAGES || pages_now < 2 * i64::from(pages_then) {
        return Ok(Analysis::NotNeeded);
    }
    sqlx::query("ANALYZE crm_rows").execute(pool).await?;
    // An analysis records the table's size; a skipped one leaves the old one.
    if pages(pool).await?.1 == pages_then {
        return Ok(Analysis::NotPermitted);
    }
    tracing::info!(pages = pages_now, pages_then, "crm_rows analysed: it outgrew its statistics");
    Ok(Analysis::Done)
}

/// Runs [`analyze_if_grown`] every 250 ms until `shutdown`, or until it finds it may not analyse the table.
pub async fn keep_current(pool: PgPool, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match analyze_if_grown(&pool).await {
            Ok(Analysis::NotNeeded | Analysis::Done) => {}
            Ok(Analysis::NotPermitted) => {
                tracing::warn!("crm-api's database role cannot analyse crm_rows (it does not own it); autovacuum will");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "checking crm_rows' statistics failed; will retry"),
        }
    }
}
