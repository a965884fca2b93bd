//! Retention of the delivery log: without it `deliveries`, their `delivery_attempts` and the event bodies kept in
//! `deliveries.event` grow for ever. crm-api's housekeeping calls [`prune_deliveries`] at start and every ten minutes with
//! `CRM_DELIVERY_RETENTION_DAYS` (default 30).

use sqlx::PgPool;
use std::time::Duration;

/// Deliveries deleted per statement: small enough that each statement is a short transaction holding row locks
/// on old rows nobody else wants, never a lock that stalls the worker's writes to the table.
pub const PRUNE_BATCH: i64 = 1000;

/// Deletes ended deliveries (`succeeded`, `failed`, `dead`, `skipped`) whose `updated_at` is older than
/// `retention`, with their attempts (`ON DELETE CASCADE`) and stored event, and returns how many went.
///
/// Deletes `batch` rows per statement, each statement its own transaction, until a statement deletes fewer than
/// `batch`. The cut-off is fixed when the call starts, so a run ends even while deliveries keep ending. Rows are
/// taken with `FOR UPDATE SKIP LOCKED`: a delivery an operator is redelivering right now (its row locked) is left
/// for the next run, and by then it is `pending` again; several crm-api replicas pruning at once share the work
/// instead of waiting on each other. The partial index `deliveries_ended_updated_at` lets each statement read just
/// the rows it deletes.
///
/// Deliveries still `pending` or `retrying` are never pruned, however old: their message is still in the stream
/// and the row is the worker's send log for it — the lease that keeps two workers from sending one event, the
/// attempt count the retry budget is spent against, the next attempt's time. Deleting it would make the worker's
/// next claim create the delivery afresh, with a new retry budget and no history. A delivery in progress for
/// longer than the retention is a fault to look at, not log to throw away.
///
/// An ended delivery's row also stops the worker from sending its event twice when the stream hands the message
/// out again; that can happen only within seconds to minutes of the delivery ending (an unacknowledged message,
/// a republish inside the stream's duplicate window), far below the one-day minimum retention.
pub async fn prune_deliveries(pool: &PgPool, retention: Duration, batch: i64) -> Result<u64, sqlx::Error> {
    // The database's clock, the one that wrote `updated_at`.
    let cutoff =
        sqlx::query_scalar!(r#"SELECT now() - $1 * interval '1 second' AS "cutoff!""#, retention.as_secs_f64())
            .fetch_one(pool)
            .await?;
    // A batch of 0 would delete nothing and never come up short.
    let batch = batch.max(1);
    let mut pruned = 0;
    loop {
        // The status list matches the partial index's predicate, so the planner can use it.
        let deleted = sqlx::query!(
            "DELETE FROM deliveries
              WHERE id IN (SELECT id FROM deliveries
                            WHERE status IN ('succeeded', 'failed', 'dead', 'skipped') AND updated_at < $1
                            LIMIT $2
                            FOR UPDATE SKIP LOCKED)",
            cutoff,
            batch
        )
        .execute(pool)
        .await?
        .rows_affected();
        pruned += deleted;
        if deleted < batch.unsigned_abs() {
            return Ok(pruned);
        }
    }
}

#[cfg(test)]
mod tests {
    use crm_db::DeliveryStatus;

    #[test]
    fn the_pruned_statuses_are_exactly_the_ended_ones_and_match_the_index() {
        let ended: Vec<String> =
            DeliveryStatus::ALL.into_iter().filter(|s| s.has_ended()).map(|s| format!("'{}'", s.as_str())).collect();
        let list = format!("status IN ({})", ended.join(", "));
        assert!(include_str!("retention.rs").contains(&list), "the DELETE must name {list}");
        let index = include_str!("../../../migrations/20261124000001_delivery_retention.sql");
        assert!(index.contains(&list), "the partial index must name {list}");
    }
}
