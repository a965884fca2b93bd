//! SQL of the delivery statistics: a workspace's deliveries of a time window, aggregated in PostgreSQL.
//!
//! The window is an id range (deliveries are UUIDv7, see [`crate::domain::ids`]), so each statement reads the
//! window's deliveries from the `(workspace_id, id)` index and their attempts by their primary key, never the rest
//! of the log. Its cost grows with the deliveries in the window.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// The window: deliveries created at or after `from` (and so with an id at least `first_id`), cut into buckets of
/// `bucket_secs` seconds from `from`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub first_id: Uuid,
    pub bucket_secs: f64,
}

/// How many deliveries of one status were created in one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    pub bucket: i32,
    pub status: String,
    pub count: i64,
}

/// Deliveries created in the window, by bucket (of their creation) and current status.
pub async fn status_counts(
    db: impl PgExecutor<'_>,
    workspace_id: Uuid,
    w: &Window,
) -> Result<Vec<StatusCount>, sqlx::Error> {
    sqlx::query_as!(
        StatusCount,
        r#"SELECT floor(extract(epoch FROM created_at - $3)::float8 / $4)::int4 AS "bucket!",
                  status AS "status!", count(*) AS "count!"
             FROM deliveries
            WHERE workspace_id = $1 AND id >= $2 AND created_at >= $3
            GROUP BY 1, 2"#,
        workspace_id,
        w.first_id,
        w.from,
        w.bucket_secs
    )
    .fetch_all(db)
    .await
}

/// The median and 99th percentile of the attempts' durations in one bucket (of their start).
#[derive(Debug, Clone, PartialEq)]
pub struct BucketLatency {
    pub bucket: i32,
    pub p50: f64,
    pub p99: f64,
}

/// Attempt durations per bucket, for the attempts (started in the window) of the deliveries created in it.
pub async fn attempt_latency_by_bucket(
    db: impl PgExecutor<'_>,
    workspace_id: Uuid,
    w: &Window,
) -> Result<Vec<BucketLatency>, sqlx::Error> {
    sqlx::query_as!(
        BucketLatency,
        r#"SELECT floor(extract(epoch FROM a.started_at - $3)::float8 / $4)::int4 AS "bucket!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms) AS "p50!",
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY a.duration_ms) AS "p99!"
             FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id
            WHERE d.workspace_id = $1 AND d.id >= $2 AND d.created_at >= $3 AND a.started_at >= $3
            GROUP BY 1"#,
        workspace_id,
        w.first_id,
        w.from,
        w.bucket_secs
    )
    .fetch_all(db)
    .await
}

/// Percentiles of a set of durations, in milliseconds; `None` when the set is empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Percentiles {
    pub count: i64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

/// Over the whole window: attempt durations (as in [`attempt_latency_by_bucket`]), and the time from a delivery's
/// creation to its success, for the deliveries created in the window that have succeeded.
pub async fn latency(
    db: impl PgExecutor<'_>,
    workspace_id: Uuid,
    w: &Window,
) -> Result<(Percentiles, Percentiles), sqlx::Error> {
    let r = sqlx::query!(
        r#"WITH d AS (SELECT id, status, created_at, delivered_at FROM deliveries
                       WHERE workspace_id = $1 AND id >= $2 AND created_at >= $3),
                a AS (SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY a.duration_ms) AS p,
                             count(*) AS n
                        FROM d JOIN delivery_attempts a ON a.delivery_id = d.id
                       WHERE a.started_at >= $3),
                e AS (SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (
                                 ORDER BY extract(epoch FROM d.delivered_at - d.created_at)::float8 * 1000) AS p,
                             count(*) AS n
                        FROM d WHERE d.status = 'succeeded' AND d.delivered_at IS NOT NULL)
           SELECT a.p AS attempt_p, a.n AS "attempt_n!", e.p AS delivery_p, e.n AS "delivery_n!" FROM a, e"#,
        workspace_id,
        w.first_id,
        w.from
    )
    .fetch_one(db)
    .await?;
    let percentiles = |count: i64, p: Option<Vec<f64>>| {
        let p = p.unwrap_or_default();
        Percentiles { count, p50: p.first().copied(), p90: p.get(1).copied(), p99: p.get(2).copied() }
    };
    Ok((percentiles(r.attempt_n, r.attempt_p), percentiles(r.delivery_n, r.delivery_p)))
}
