//! The worker's settings cache against a real PostgreSQL (a fresh database per test): deliveries that miss the
//! cache together read the workspace's settings once.

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
