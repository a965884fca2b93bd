//! How the hot path's statements are planned. The relay's pool caches one plan per statement
//! (`service_common::db::connect_key_lookups`), so each plan is made once, here on empty tables as on a brand-new database,
//! and must still read the outbox and deliveries through their primary keys. The writers' pool caches its plans too;
//! their lookup of leads by email is planned again whenever `crm_rows` is analysed, and takes the email index then.

use crm_api::repo::outbox::{self, NewEvent};
use crm_api::repo::rows;
use crm_events::{RowChangedEvent, Subjects};
use service_common::db::{connect_key_lookups, Commit};
use std::collections::BTreeMap;
use std::time::Duration;
use test_support::TestDb;
use uuid::Uuid;

/// A migrated database with one workspace: the database (dropped with it), an admin pool, the workspace, and a
/// one-connection pool set up as the hot path's are (`connect_key_lookups`) committing as `commit` says.
async fn setup(commit: Commit) -> (TestDb, sqlx::PgPool, Uuid, sqlx::PgPool) {
    let db = TestDb::create().await;
    let admin = db.pool().await;
    crm_db::migrate(&admin).await.expect("migrations");
    let ws = Uuid::now_v7();
    sqlx::query("INSERT INTO workspaces (id, name) VALUES ($1, 'w')").bind(ws).execute(&admin).await.unwrap();
    let url = secrecy::SecretString::from(db.url.clone());
    let pool = connect_key_lookups(&url, 1, "test", commit).await.unwrap();
    (db, admin, ws, pool)
}

#[tokio::test]
async fn the_relay_statements_are_planned_once_through_primary_keys() {
    let (_db, admin, ws, pool) = setup(Commit::Async).await;
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

        assert_eq!(outbox::backlog(&pool, Duration::ZERO).await.unwrap(), 2);
        // A row a writer committed just now is most likely published and waiting for its delete: not backlog yet.
        // The test event, which carries its body, is.
        assert_eq!(outbox::backlog(&pool, Duration::from_secs(3600)).await.unwrap(), 1);
        assert!(!outbox::backlog_at_least(&pool, 2, Duration::from_secs(3600)).await.unwrap());
        assert!(outbox::backlog_at_least(&pool, 2, Duration::ZERO).await.unwrap());
        let mut tx = pool.begin().await.unwrap();
        let taken = outbox::take(&mut tx, 10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(taken.iter().map(|p| p.msg_id).collect::<Vec<_>>(), [test_event.id], "the written one is left");
        outbox::park(&mut tx, &[(&taken[0], "test".to_owned())]).await.unwrap();
        tx.commit().await.unwrap();
        outbox::delete_published(&pool, &seqs.into_values().collect::<Vec<_>>()).await.unwrap();
        assert_eq!(outbox::backlog(&pool, Duration::ZERO).await.unwrap(), 0);
        assert!(outbox::parked_count(&pool).await.unwrap() >= 1);
    }
    let mut conn = pool.acquire().await.unwrap();
    let plans = test_support::prepared_plans(&mut conn).await;
    test_support::assert_planned_once_through_primary_keys(&plans, 4);
}

/// The writers' read finds leads by email. A plan made while `crm_rows` has no statistics may read the workspace
/// through its `(workspace_id, id)` index and filter every row; an `ANALYZE` (crm-api's own, see
/// `crm_api::statistics`, or autovacuum's) makes PostgreSQL plan the cached statement again, and the new plan probes
/// the unique email index: one row per lead looked up, however large the workspace.
#[tokio::test]
async fn the_writers_cached_read_is_planned_again_and_takes_the_email_index_once_crm_rows_is_analysed() {
    let (_db, admin, ws, pool) = setup(Commit::Durable).await;
    let mut conn = pool.acquire().await.unwrap();
    let (emails, ids) = (vec![(ws, "lead7@example.com".to_owned())], vec![(ws, Uuid::now_v7())]);
    assert!(rows::read_for_change(&mut *conn, &emails, &ids).await.unwrap().is_empty());
    let read = |plans: Vec<test_support::PreparedPlan>| {
        plans.into_iter().find(|p| p.statement.contains("lower(r.email) = lower(t.e)")).expect("the read")
    };
    let made_empty = read(test_support::prepared_plans(&mut conn).await);
    sqlx::query(
        "INSERT INTO crm_rows (id, workspace_id, email)
         SELECT gen_random_uuid(), $1, 'lead' || n || '@example.com' FROM generate_series(1, 3000) AS n",
    )
    .bind(ws)
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query("ANALYZE crm_rows").execute(&admin).await.unwrap();
    let found = rows::read_for_change(&mut *conn, &emails, &ids).await.unwrap();
    assert_eq!(found.iter().map(|r| r.email.as_str()).collect::<Vec<_>>(), ["lead7@example.com"]);
    let read = read(test_support::prepared_plans(&mut conn).await);
    assert_eq!(read.custom_plans, 0, "planned once per analysis, not per call");
    assert_ne!(read.plan, made_empty.plan, "planned again after the analysis");
    // The email is an index condition, not a filter over the workspace's rows. (The lookup by workspace and id may
    // probe the primary key or the `(workspace_id, id)` index: either finds the one row.)
    assert!(read.plan.contains("crm_rows_workspace_email_key"), "{}", read.plan);
    assert!(!read.plan.lines().any(|l| l.contains("Filter") && l.contains("email")), "{}", read.plan);
}
