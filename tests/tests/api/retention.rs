//! Delivery log retention: ended deliveries past `CRM_DELIVERY_RETENTION_DAYS` go, with their attempts and stored
//! event; deliveries in progress stay however old they are.

use crm_api::retention::prune_deliveries;
use crm_tests::{base_env, eventually, ApiProcess, TestDb, TestStream};
use sqlx::PgPool;
use std::collections::BTreeSet;
use std::time::Duration;
use uuid::Uuid;

const DAY: u64 = 24 * 60 * 60;

/// A database with the schema applied and one workspace, and no crm-api running: its housekeeping would prune at
/// start, racing the test's own call.
async fn migrated() -> (TestDb, PgPool, Uuid) {
    crm_tests::init_logging();
    let db = TestDb::create().await;
    let pool = db.pool().await;
    crm_db::migrate(&pool).await.expect("migrations apply");
    let ws = Uuid::now_v7();
    sqlx::query("INSERT INTO workspaces (id, name) VALUES ($1, 'Retention')").bind(ws).execute(&pool).await.unwrap();
    (db, pool, ws)
}

/// A delivery of `status` created `created_days` and last updated `updated_days` ago, with two attempts.
async fn delivery(pool: &PgPool, ws: Uuid, status: &str, created_days: i32, updated_days: i32) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO deliveries (id, workspace_id, event_type, status, attempts, event, created_at, updated_at)
         VALUES ($1, $2, 'crm_row.created', $3, 2, '\\x7b7d'::bytea,
                 now() - make_interval(days => $4), now() - make_interval(days => $5))",
    )
    .bind(id)
    .bind(ws)
    .bind(status)
    .bind(created_days)
    .bind(updated_days)
    .execute(pool)
    .await
    .unwrap();
    for attempt in 1..=2 {
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
             VALUES ($1, $2, now() - make_interval(days => $3), 12, 500)",
        )
        .bind(id)
        .bind(attempt)
        .bind(updated_days)
        .execute(pool)
        .await
        .unwrap();
    }
    id
}

async fn delivery_ids(pool: &PgPool) -> BTreeSet<Uuid> {
    sqlx::query_scalar("SELECT id FROM deliveries").fetch_all(pool).await.unwrap().into_iter().collect()
}

async fn attempts_of(pool: &PgPool, ids: &BTreeSet<Uuid>) -> i64 {
    let ids: Vec<Uuid> = ids.iter().copied().collect();
    sqlx::query_scalar("SELECT count(*) FROM delivery_attempts WHERE delivery_id = ANY($1)")
        .bind(ids)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn only_ended_deliveries_past_the_retention_are_pruned_with_their_attempts() {
    let (_db, pool, ws) = migrated().await;
    let mut old_ended = BTreeSet::new();
    for status in ["succeeded", "succeeded", "succeeded", "failed", "dead", "skipped"] {
        old_ended.insert(delivery(&pool, ws, status, 31, 31).await);
    }
    let mut kept = BTreeSet::new();
    for status in ["succeeded", "failed", "dead", "skipped", "pending", "retrying"] {
        kept.insert(delivery(&pool, ws, status, 29, 29).await);
    }
    // In progress: never pruned, however old.
    kept.insert(delivery(&pool, ws, "pending", 400, 400).await);
    kept.insert(delivery(&pool, ws, "retrying", 31, 31).await);
    // Created long ago but ended (or was redelivered) recently: the last update counts.
    kept.insert(delivery(&pool, ws, "succeeded", 90, 1).await);
    assert_eq!(attempts_of(&pool, &old_ended).await, 12);

    // Batches of 4 for 6 rows: a full batch, then a short one ends the run.
    let pruned = prune_deliveries(&pool, Duration::from_secs(30 * DAY), 4).await.unwrap();
    assert_eq!(pruned, 6);
    assert_eq!(delivery_ids(&pool).await, kept, "exactly the old ended deliveries are gone");
    assert_eq!(attempts_of(&pool, &old_ended).await, 0, "their attempts went with them");
    assert_eq!(attempts_of(&pool, &kept).await, 2 * kept.len() as i64, "the others keep every attempt");

    // Nothing left to prune; a batch size dividing the backlog exactly also ends (3 + 3, then an empty batch).
    assert_eq!(prune_deliveries(&pool, Duration::from_secs(30 * DAY), 4).await.unwrap(), 0);
    for _ in 0..6 {
        delivery(&pool, ws, "dead", 45, 45).await;
    }
    assert_eq!(prune_deliveries(&pool, Duration::from_secs(30 * DAY), 3).await.unwrap(), 6);
    assert_eq!(delivery_ids(&pool).await, kept);

    // A shorter retention reaches the younger ended deliveries, still not the ones in progress.
    assert_eq!(prune_deliveries(&pool, Duration::from_secs(2 * DAY), 1000).await.unwrap(), 4);
    assert_eq!(delivery_ids(&pool).await.len(), kept.len() - 4);
}

#[tokio::test]
async fn the_pruning_query_can_use_the_partial_index() {
    let (_db, pool, _ws) = migrated().await;
    let valid: bool = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'deliveries_ended_updated_at'::regclass",
    )
    .fetch_one(&pool)
    .await
    .expect("the retention index exists");
    assert!(valid, "built concurrently and valid");
    // On an empty table the planner prefers a scan; forbid that to see whether the index qualifies at all (its
    // predicate must be implied by the query's status list).
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off").execute(&mut *conn).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM deliveries
          WHERE status IN ('succeeded', 'failed', 'dead', 'skipped') AND updated_at < now() LIMIT 1000",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(plan.iter().any(|line| line.contains("deliveries_ended_updated_at")), "{plan:#?}");
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse::<f64>().ok())).map(|v| v as u64)
}

#[tokio::test]
async fn crm_api_prunes_with_the_configured_retention_and_counts_it() {
    let (db, pool, ws) = migrated().await;
    let old = delivery(&pool, ws, "succeeded", 3, 3).await;
    let recent = delivery(&pool, ws, "failed", 1, 1).await;
    let in_progress = delivery(&pool, ws, "retrying", 3, 3).await;

    let stream = TestStream::new(&crm_tests::shared_nats_url());
    let mut env = base_env(&db, &stream);
    // Three days is well inside the 30-day default: only the configured retention prunes it.
    env.insert("CRM_DELIVERY_RETENTION_DAYS".into(), "2".into());
    let process = ApiProcess::start(env).await;
    // Housekeeping's first round runs at start; the counter says when it has pruned.
    let api = process.api.clone();
    eventually(Duration::from_secs(20), || async {
        metric(&api.get("/metrics", None).await.text, "crm_deliveries_pruned_total") == Some(1)
    })
    .await;
    assert_eq!(delivery_ids(&pool).await, BTreeSet::from([recent, in_progress]));
    assert_eq!(attempts_of(&pool, &BTreeSet::from([old])).await, 0);
    process.stop().await;
}
