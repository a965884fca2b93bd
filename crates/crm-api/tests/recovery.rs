//! The recovery task's passes against a real PostgreSQL, one pass at a time (no timers, no relay, no worker):
//! what a batch queues, how far the walk records it got, and the pacing gates that keep a recovery behind live
//! traffic.

use chrono::{Duration, Utc};
use crm_api::metrics::ApiMetrics;
use crm_api::recovery::{Recoverer, RecoveryPacing};
use crm_api::repo::recoveries::{self, NewRecovery, Recovery};
use crm_events::{RowChangedEvent, Subjects};
use sqlx::PgPool;
use test_support::TestDb;
use uuid::Uuid;

struct World {
    _db: TestDb,
    pool: PgPool,
    ws: Uuid,
}

async fn world() -> World {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    crm_db::migrate(&pool).await.expect("migrations");
    let ws = workspace(&pool).await;
    World { _db: db, pool, ws }
}

/// A workspace whose webhook is on.
async fn workspace(pool: &PgPool) -> Uuid {
    let ws = Uuid::now_v7();
    sqlx::query("INSERT INTO workspaces (id, name) VALUES ($1, 'w')").bind(ws).execute(pool).await.unwrap();
    sqlx::query(
        "INSERT INTO webhook_settings (workspace_id, enabled, url, secret_sealed, secret_last4)
         VALUES ($1, true, 'https://crm.example.com/in', '\\x00', 'abcd')",
    )
    .bind(ws)
    .execute(pool)
    .await
    .unwrap();
    ws
}

/// A delivery of `ws` created `ago` in the past, with `status` and `attempts` made.
async fn delivery(pool: &PgPool, ws: Uuid, ago: Duration, status: &str, attempts: i32) -> Uuid {
    let at = Utc::now() - ago;
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, at.timestamp() as u64, at.timestamp_subsec_nanos());
    let event = RowChangedEvent { id: Uuid::new_v7(ts), ..RowChangedEvent::webhook_test(ws) };
    let mut conn = pool.acquire().await.unwrap();
    crm_api::repo::deliveries::create_pending(&mut conn, &event).await.unwrap();
    sqlx::query(
        "UPDATE deliveries SET status = $2, attempts = $3, created_at = $4, updated_at = $4 - interval '1 second'
          WHERE id = $1",
    )
    .bind(event.id)
    .bind(status)
    .bind(attempts)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    event.id
}

/// Starts a recovery the way the service does (without its request checks).
async fn start(pool: &PgPool, ws: Uuid, since: Duration, statuses: &[&str]) -> Recovery {
    let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
    let mut tx = pool.begin().await.unwrap();
    let since = Utc::now() - since;
    let (from, upto) = (crm_api::domain::ids::first_id_at(since), crm_api::domain::ids::last_id_at(Utc::now()));
    let matched = recoveries::count_matched(&mut tx, ws, &statuses, from, upto).await.unwrap();
    let new = NewRecovery {
        id: Uuid::now_v7(),
        workspace_id: ws,
        since,
        statuses: &statuses,
        matched,
        walked_past: from,
        upto,
    };
    let created = recoveries::create(&mut tx, &new).await.unwrap().expect("none running");
    tx.commit().await.unwrap();
    created
}

fn recoverer(pool: &PgPool, batch: i64) -> Recoverer {
    let pacing = RecoveryPacing { batch, interval: std::time::Duration::from_secs(3600) };
    Recoverer::new(pool.clone(), Subjects::new("t"), pacing, ApiMetrics::new())
}

async fn recovery(pool: &PgPool, r: &Recovery) -> Recovery {
    recoveries::get(pool, r.workspace_id, r.id).await.unwrap().unwrap()
}

async fn status(pool: &PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM deliveries WHERE id = $1").bind(id).fetch_one(pool).await.unwrap()
}

/// The outbox rows queued for a delivery (their payload is its stored event).
async fn queued_for(pool: &PgPool, id: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM outbox o JOIN deliveries d ON d.id = $1 AND o.payload = d.event AND o.msg_id <> d.id",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_pass_queues_one_batch_in_id_order_and_records_how_far_it_got() {
    let w = world().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let status = if i % 2 == 0 { "failed" } else { "dead" };
        ids.push(delivery(&w.pool, w.ws, Duration::minutes(50 - i), status, 3).await);
    }
    let r = start(&w.pool, w.ws, Duration::hours(1), &["dead", "failed"]).await;
    assert_eq!((r.status.as_str(), r.matched, r.queued), ("running", 12, 0));

    assert_eq!(recoverer(&w.pool, 5).pass().await.unwrap(), 5);
    for (i, id) in ids.iter().enumerate() {
        let (status, queued) = (status(&w.pool, *id).await, queued_for(&w.pool, *id).await);
        if i < 5 {
            assert_eq!((status.as_str(), queued), ("pending", 1), "delivery {i}, among the first five by id");
        } else {
            assert!(matches!(status.as_str(), "failed" | "dead") && queued == 0, "delivery {i}: {status}");
        }
    }
    let budget: (i32, i32) = sqlx::query_as("SELECT attempts, budget_start FROM deliveries WHERE id = $1")
        .bind(ids[0])
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(budget, (3, 3), "the retry budget starts afresh from the attempts made");
    let after = recovery(&w.pool, &r).await;
    assert_eq!((after.queued, after.walked_past), (5, ids[4]));
}

#[tokio::test]
async fn a_recovery_waits_while_the_outbox_or_its_workspace_has_a_batch_queued_then_completes() {
    let w = world().await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(delivery(&w.pool, w.ws, Duration::minutes(30 - i), "failed", 1).await);
    }
    let r = start(&w.pool, w.ws, Duration::hours(1), &["failed"]).await;
    let task = recoverer(&w.pool, 3);
    assert_eq!(task.pass().await.unwrap(), 3);
    // Three events in the outbox: the relay has not caught up.
    assert_eq!(task.pass().await.unwrap(), 0);
    sqlx::query("DELETE FROM outbox").execute(&w.pool).await.unwrap();
    // Published, but three deliveries still wait for their first attempt: the endpoint has not caught up.
    assert_eq!(task.pass().await.unwrap(), 0);
    sqlx::query("UPDATE deliveries SET status = 'succeeded' WHERE status = 'pending'").execute(&w.pool).await.unwrap();
    assert_eq!(task.pass().await.unwrap(), 3);
    sqlx::query("DELETE FROM outbox").execute(&w.pool).await.unwrap();
    sqlx::query("UPDATE deliveries SET status = 'succeeded' WHERE status = 'pending'").execute(&w.pool).await.unwrap();
    // Live traffic of the workspace: three fresh pending deliveries hold the recovery back as well.
    let live: Vec<Uuid> = [
        delivery(&w.pool, w.ws, Duration::zero(), "pending", 0).await,
        delivery(&w.pool, w.ws, Duration::zero(), "pending", 0).await,
        delivery(&w.pool, w.ws, Duration::zero(), "pending", 0).await,
    ]
    .into();
    assert_eq!(task.pass().await.unwrap(), 0);
    sqlx::query("UPDATE deliveries SET status = 'succeeded' WHERE id = ANY($1)")
        .bind(&live)
        .execute(&w.pool)
        .await
        .unwrap();
    assert_eq!(task.pass().await.unwrap(), 2, "the last two");
    assert_eq!(recovery(&w.pool, &r).await.status, "running", "it completes when a batch finds nothing left");
    sqlx::query("DELETE FROM outbox").execute(&w.pool).await.unwrap();
    sqlx::query("UPDATE deliveries SET status = 'succeeded' WHERE status = 'pending'").execute(&w.pool).await.unwrap();
    assert_eq!(task.pass().await.unwrap(), 0);
    let done = recovery(&w.pool, &r).await;
    assert_eq!((done.status.as_str(), done.matched, done.queued), ("completed", 8, 8));
    assert!(done.finished_at.is_some());
    assert!(recoveries::running(&w.pool, w.ws).await.unwrap().is_none());
}

#[tokio::test]
async fn only_what_the_recovery_matched_and_is_still_ended_is_queued() {
    let w = world().await;
    let failed = delivery(&w.pool, w.ws, Duration::minutes(20), "failed", 1).await;
    let redelivered = delivery(&w.pool, w.ws, Duration::minutes(19), "failed", 1).await;
    let succeeded = delivery(&w.pool, w.ws, Duration::minutes(18), "succeeded", 1).await;
    let skipped = delivery(&w.pool, w.ws, Duration::minutes(17), "skipped", 0).await;
    let before_since = delivery(&w.pool, w.ws, Duration::minutes(90), "failed", 1).await;
    let other_ws = workspace(&w.pool).await;
    let elsewhere = delivery(&w.pool, other_ws, Duration::minutes(20), "failed", 1).await;
    let r = start(&w.pool, w.ws, Duration::hours(1), &["failed", "skipped"]).await;
    assert_eq!(r.matched, 3);
    // After the recovery began: one is redelivered by hand (pending again), one more fails.
    sqlx::query("UPDATE deliveries SET status = 'pending', updated_at = now() WHERE id = $1")
        .bind(redelivered)
        .execute(&w.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE deliveries SET status = 'failed', updated_at = now() + interval '1 second' WHERE id = $1")
        .bind(succeeded)
        .execute(&w.pool)
        .await
        .unwrap();
    let task = recoverer(&w.pool, 100);
    // The redelivered one is pending: a batch's worth of pending deliveries would hold the recovery, one does not.
    assert_eq!(task.pass().await.unwrap(), 2);
    for (id, times) in [(failed, 1), (skipped, 1), (redelivered, 0), (succeeded, 0), (before_since, 0), (elsewhere, 0)]
    {
        assert_eq!(queued_for(&w.pool, id).await, times, "{id}");
    }
    sqlx::query("DELETE FROM outbox").execute(&w.pool).await.unwrap();
    assert_eq!(task.pass().await.unwrap(), 0);
    let done = recovery(&w.pool, &r).await;
    assert_eq!((done.status.as_str(), done.matched, done.queued), ("completed", 3, 2));
}

#[tokio::test]
async fn a_recovery_waits_while_the_webhook_is_off() {
    let w = world().await;
    delivery(&w.pool, w.ws, Duration::minutes(5), "dead", 3).await;
    let r = start(&w.pool, w.ws, Duration::hours(1), &["dead"]).await;
    sqlx::query("UPDATE webhook_settings SET enabled = false, disabled_reason = 'gone' WHERE workspace_id = $1")
        .bind(w.ws)
        .execute(&w.pool)
        .await
        .unwrap();
    let task = recoverer(&w.pool, 10);
    assert_eq!(task.pass().await.unwrap(), 0);
    assert_eq!(recovery(&w.pool, &r).await.status, "running");
    sqlx::query("UPDATE webhook_settings SET enabled = true, disabled_reason = NULL WHERE workspace_id = $1")
        .bind(w.ws)
        .execute(&w.pool)
        .await
        .unwrap();
    assert_eq!(task.pass().await.unwrap(), 1);
}

#[tokio::test]
async fn replicas_passing_at_once_queue_each_delivery_once() {
    let w = world().await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(delivery(&w.pool, w.ws, Duration::minutes(40 - i), "failed", 1).await);
    }
    let r = start(&w.pool, w.ws, Duration::hours(1), &["failed"]).await;
    // Two replicas' tasks, each taking batches of 7 of the same recovery at the same moment.
    let (a, b) = (recoverer(&w.pool, 7), recoverer(&w.pool, 7));
    let mut total = 0;
    for _ in 0..10 {
        let (x, y) = tokio::join!(a.pass(), b.pass());
        total += x.unwrap() + y.unwrap();
        sqlx::query("DELETE FROM outbox").execute(&w.pool).await.unwrap();
        sqlx::query("UPDATE deliveries SET status = 'succeeded' WHERE status = 'pending'")
            .execute(&w.pool)
            .await
            .unwrap();
    }
    assert_eq!(total, 40, "every delivery re-opened (and queued) exactly once");
    let done = recovery(&w.pool, &r).await;
    assert_eq!((done.status.as_str(), done.queued), ("completed", 40));
    let reopened: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE id = ANY($1) AND status = 'succeeded'")
            .bind(&ids)
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(reopened, 40);
}
