//! Delivery statistics: counts per bucket by status and latency percentiles, from deliveries and attempts written
//! straight into the delivery log at known times.

use chrono::{DateTime, Duration, DurationRound, Utc};
use crm_tests::TestApp;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

fn v7_at(at: DateTime<Utc>) -> Uuid {
    Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, at.timestamp() as u64, at.timestamp_subsec_nanos()))
}

/// A delivery created at `at` with `status`, attempts taking `durations` ms (started a second apart after `at`),
/// and, when it succeeded, delivered `delivered_after_ms` after it was created.
async fn delivery(
    pool: &PgPool,
    ws: Uuid,
    at: DateTime<Utc>,
    status: &str,
    durations: &[i32],
    delivered_after_ms: i64,
) {
    let id = v7_at(at);
    let delivered = (status == "succeeded").then(|| at + Duration::milliseconds(delivered_after_ms));
    sqlx::query(
        "INSERT INTO deliveries (id, workspace_id, event_type, status, event, attempts, created_at, updated_at,
                                 delivered_at)
         VALUES ($1, $2, 'webhook.test', $3, '\\x7b7d', $4, $5, $5, $6)",
    )
    .bind(id)
    .bind(ws)
    .bind(status)
    .bind(durations.len() as i32)
    .bind(at)
    .bind(delivered)
    .execute(pool)
    .await
    .unwrap();
    for (i, duration) in durations.iter().enumerate() {
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
             VALUES ($1, $2, $3, $4, 200)",
        )
        .bind(id)
        .bind(i as i32 + 1)
        .bind(at + Duration::seconds(i as i64 + 1))
        .bind(duration)
        .execute(pool)
        .await
        .unwrap();
    }
}

fn bucket_at(stats: &Value, at: DateTime<Utc>, size: Duration) -> &Value {
    let start = crm_mapping::format_timestamp(&at.duration_trunc(size).unwrap());
    stats["buckets"].as_array().unwrap().iter().find(|b| b["start"] == start.as_str()).expect("a bucket")
}

#[tokio::test]
async fn stats_count_deliveries_per_bucket_by_status_with_latency_percentiles() {
    let app = TestApp::spawn().await;
    let (ws, _admin) = app.workspace_with_token("admin").await;
    let viewer = app.api.create_token(ws, "viewer").await;
    let (other, stranger) = app.workspace_with_token("admin").await;
    let minute = Duration::minutes(1);
    let now = Utc::now().duration_trunc(minute).unwrap();
    let (a, b, c) =
        (now - Duration::minutes(10) + Duration::seconds(10), now - Duration::minutes(3), now - Duration::hours(2));
    for (i, status, durations, delivered) in [
        (0, "succeeded", &[10][..], 100),
        (1, "succeeded", &[20][..], 200),
        (2, "succeeded", &[30][..], 300),
        (3, "failed", &[40][..], 0),
        (4, "dead", &[50, 60][..], 0),
    ] {
        delivery(&app.pool, ws, a + Duration::milliseconds(i), status, durations, delivered).await;
    }
    for (i, status, durations) in
        [(0, "retrying", &[70][..]), (1, "retrying", &[70][..]), (2, "pending", &[][..]), (3, "skipped", &[][..])]
    {
        delivery(&app.pool, ws, b + Duration::milliseconds(i), status, durations, 0).await;
    }
    delivery(&app.pool, ws, c, "succeeded", &[5], 50).await;
    delivery(&app.pool, other, a, "succeeded", &[999], 999).await;

    let path = format!("/v1/workspaces/{ws}/crm-webhook/stats");
    let hour = app.api.get(&path, Some(&viewer)).await.expect(200).json();
    assert_eq!((&hour["window"], &hour["bucket_seconds"]), (&json!("1h"), &json!(60)));
    assert_eq!(hour["buckets"].as_array().unwrap().len(), 60);
    assert_eq!(
        hour["totals"],
        json!({"pending": 1, "retrying": 2, "succeeded": 3, "failed": 1, "dead": 1, "skipped": 1}),
        "another workspace's and older deliveries are not counted"
    );
    let at_a = bucket_at(&hour, a, minute);
    assert_eq!(
        at_a["deliveries"],
        json!({"pending": 0, "retrying": 0, "succeeded": 3, "failed": 1, "dead": 1, "skipped": 0})
    );
    // percentile_cont over 10, 20, 30, 40, 50, 60 ms.
    assert_eq!((&at_a["attempt_ms_p50"], &at_a["attempt_ms_p99"]), (&json!(35.0), &json!(59.5)));
    let at_b = bucket_at(&hour, b, minute);
    assert_eq!((at_b["deliveries"]["retrying"].as_i64(), at_b["attempt_ms_p50"].as_f64()), (Some(2), Some(70.0)));
    let empty = bucket_at(&hour, now - Duration::minutes(30), minute);
    assert_eq!((empty["deliveries"]["succeeded"].as_i64(), &empty["attempt_ms_p50"]), (Some(0), &Value::Null));
    // Over the window: eight attempts (10 … 70, 70), and three deliveries that took 100, 200 and 300 ms.
    assert_eq!(hour["latency"]["attempt_ms"], json!({"count": 8, "p50": 45.0, "p90": 70.0, "p99": 70.0}));
    assert_eq!(hour["latency"]["delivery_ms"], json!({"count": 3, "p50": 200.0, "p90": 280.0, "p99": 298.0}));
    assert!(hour["from"].as_str() < hour["to"].as_str());

    let day = app.api.get(&format!("{path}?window=24h"), Some(&viewer)).await.expect(200).json();
    assert_eq!((day["buckets"].as_array().unwrap().len(), &day["bucket_seconds"]), (96, &json!(900)));
    assert_eq!(day["totals"]["succeeded"], 4, "the day includes the delivery of two hours ago");
    assert_eq!(bucket_at(&day, c, Duration::minutes(15))["deliveries"]["succeeded"], 1);

    app.api.get(&format!("{path}?window=7d"), Some(&viewer)).await.expect_problem(422, Some("window"));
    app.api.get(&path, Some(&stranger)).await.expect_problem(404, None);
    app.api.get(&path, None).await.expect_problem(401, None);
    let quiet = app.api.get(&format!("/v1/workspaces/{other}/crm-webhook/stats"), Some(&stranger)).await.json();
    assert_eq!(quiet["latency"]["delivery_ms"], json!({"count": 1, "p50": 999.0, "p90": 999.0, "p99": 999.0}));
}
