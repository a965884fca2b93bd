//! The worker's settings cache against a real PostgreSQL (a fresh database per test): deliveries that miss the
//! cache together read the workspace's settings once, and share that read's failure when the database is away.

use delivery_worker::settings::SettingsCache;
use service_common::SecretKeyring;
use test_support::TestDb;
use tokio::task::JoinSet;
use uuid::Uuid;

/// `n` lookups of `ws` started together, each answered.
async fn together(cache: &SettingsCache, ws: Uuid, n: usize) {
    let mut lookups = JoinSet::new();
    for _ in 0..n {
        let cache = cache.clone();
        lookups.spawn(async move { cache.get(ws).await.map(|found| found.is_none()) });
    }
    while let Some(answer) = lookups.join_next().await {
        assert!(answer.unwrap().expect("settings read"), "the workspace has no webhook");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_that_miss_together_read_the_database_once() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    crm_db::MIGRATOR.run(&pool).await.expect("migrations");
    let ws = Uuid::now_v7();
    sqlx::query("INSERT INTO workspaces (id, name) VALUES ($1, 'Acme')").bind(ws).execute(&pool).await.unwrap();
    let cache = SettingsCache::new(pool, SecretKeyring::from_bytes([7; 32]));

    together(&cache, ws, 32).await;
    assert_eq!(cache.reads(), 1, "32 deliveries of one workspace missed the cache together");

    // A change drops the entry: the next burst reads again, once.
    cache.invalidate(ws);
    together(&cache, ws, 32).await;
    assert_eq!(cache.reads(), 2);

    // Another workspace is read on its own.
    let other = Uuid::now_v7();
    together(&cache, other, 8).await;
    assert_eq!(cache.reads(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_that_waited_for_a_failed_read_fail_with_it_instead_of_each_waiting_again() {
    // Nothing listens on port 1: every read fails once the pool gives up on a connection.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(300))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let cache = SettingsCache::new(pool, SecretKeyring::from_bytes([7; 32]));
    let ws = Uuid::now_v7();

    let mut lookups = JoinSet::new();
    for _ in 0..16 {
        let cache = cache.clone();
        lookups.spawn(async move { cache.get(ws).await.is_err() });
    }
    while let Some(failed) = lookups.join_next().await {
        assert!(failed.unwrap(), "the database is away");
    }
    assert_eq!(cache.reads(), 1, "16 lookups waited for one read, and failed with it");

    // A lookup that comes after the failure tries again.
    assert!(cache.get(ws).await.is_err());
    assert_eq!(cache.reads(), 2);
}
