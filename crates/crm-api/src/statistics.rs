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

/// Analyses `crm_rows` if its file has at least [`MIN_PAGES`] pages and at least twice the pages it had at its last
/// statistics (none, for a table never analysed). Says whether it did.
pub async fn analyze_if_grown(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let (pages, pages_then): (i64, i32) = sqlx::query_as(
        "SELECT pg_relation_size(oid) / current_setting('block_size')::int8, relpages
           FROM pg_class WHERE oid = 'crm_rows'::regclass",
    )
    .fetch_one(pool)
    .await?;
    if pages < MIN_PAGES || pages < 2 * i64::from(pages_then) {
        return Ok(false);
    }
    sqlx::query("ANALYZE crm_rows").execute(pool).await?;
    tracing::info!(pages, pages_then, "crm_rows analysed: it outgrew its statistics");
    Ok(true)
}

/// Runs [`analyze_if_grown`] every 250 ms until `shutdown`.
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
