//! How the relay's statements are planned: its pool caches one plan per statement
//! (`service_common::db::Plans::Cached`), so each plan is made once, here on empty tables as on a brand-new database,
//! and must still read the outbox and deliveries through their primary keys.

use crm_api::repo::outbox::{self, NewEvent};
use crm_events::{RowChangedEvent, Subjects};
use service_common::db::{connect_key_lookups, Commit, Plans};
use std::collections::BTreeMap;
use std::time::Duration;
use test_support::TestDb;
use uuid::Uuid;

#[tokio::test]
async fn the_relay_statements_are_planned_once_through_primary_keys() {
    let db = TestDb::create().await;
    let admin = db.pool().await;
    crm_db::migrate(&admin).await.expect("migrations");
    let ws = Uuid::now_v7();
    sqlx::query("INSERT INTO workspaces (id, name) VALUES ($1, 'w')").bind(ws).execute(&admin).await.unwrap();
    let url = secrecy::SecretString::from(db.url.clone());
    let pool = connect_key_lookups(&url, 1, "test", Plans::Cached, Commit::Async).await.unwrap();
    let (subjects, headers) = (Subjects::new("t"), BTreeMap::new());
    for _ in 0..3 {
        // One event with its body in the outbox (as a test event is queued), one whose body is its delivery's (as
        // the writers queue theirs).
        let (test_event, written) = (RowChangedEvent::webhook_test(ws), RowChangedEvent::webhook_test(ws));
        let mut conn = admin.acquire().await.unwrap();
        outbox::enqueue(&mut conn, &NewEvent::of(&subjects, &test_event, &headers)).await.unwrap();
        sqlx::query(
            "INSERT INTO deliveries (id, workspace_id, event_type, status, event)
             VALUES ($1, $2, 'webhook.test', 'pending', $3)",
        )
        .bind(written.id)
        .bind(ws)
        .bind(written.to_payload())
        .execute(&mut *conn)
        .await
        .unwrap();
        let seqs = outbox::enqueue_many_with_deliveries(&mut conn, &[NewEvent::of(&subjects, &written, &headers)])
            .await
            .unwrap();
        drop(conn);

        assert_eq!(outbox::backlog(&pool).await.unwrap(), 2);
        let mut tx = pool.begin().await.unwrap();
        let taken = outbox::take(&mut tx, 10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(taken.iter().map(|p| p.msg_id).collect::<Vec<_>>(), [test_event.id], "the written one is left");
        outbox::park(&mut tx, &[(&taken[0], "test".to_owned())]).await.unwrap();
        tx.commit().await.unwrap();
        outbox::delete_published(&pool, &seqs.into_values().collect::<Vec<_>>()).await.unwrap();
        assert_eq!(outbox::backlog(&pool).await.unwrap(), 0);
        assert!(outbox::parked_count(&pool).await.unwrap() >= 1);
    }
    let mut conn = pool.acquire().await.unwrap();
    let plans = test_support::prepared_plans(&mut conn).await;
    test_support::assert_planned_once_through_primary_keys(&plans, 4);
}
