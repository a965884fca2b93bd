//! The delivery log's writer against a real PostgreSQL (a fresh database per test): a record the database refuses
//! never keeps the others of its batch out of the log, and an unreachable database is reported, not hidden.

use chrono::Utc;
use crm_db::DeliveryStatus;
use crm_events::RowChangedEvent;
use delivery_worker::store::{self, AttemptRecord, RecordError, Recorder};
use service_common::db::Held;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use test_support::TestDb;
use uuid::Uuid;

/// A migrated database with one workspace.
async fn database() -> (TestDb, PgPool, Uuid) {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    crm_db::MIGRATOR.run(&pool).await.expect("migrations");
    let ws = Uuid::now_v7();
    sqlx::query("INSERT INTO workspaces (id, name) VALUES ($1, 'Acme')").bind(ws).execute(&pool).await.unwrap();
    (db, pool, ws)
}

/// A delivery of `ws`, claimed as a worker claims it before sending.
async fn delivery(pool: &PgPool, ws: Uuid) -> Uuid {
    let event = RowChangedEvent::webhook_test(ws);
    let claim = store::claim(&mut pool.acquire().await.unwrap(), &event, &event.to_payload(), Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(claim, store::Claim::Ready { attempts: 0, budget_start: 0 });
    event.id
}

fn record(delivery_id: Uuid, error: Option<&str>, excerpt: &str) -> AttemptRecord {
    AttemptRecord {
        delivery_id,
        attempt: 1,
        started_at: Utc::now(),
        duration: Duration::from_millis(12),
        status_code: Some(200),
        error: error.map(str::to_owned),
        excerpt: Some(excerpt.to_owned()),
        status: DeliveryStatus::Succeeded,
        next_attempt_at: None,
    }
}

/// The stored attempt of `id`: its excerpt and error, or `None` when there is no row.
async fn stored(pool: &PgPool, id: Uuid) -> Option<(Option<String>, Option<String>)> {
    sqlx::query_as("SELECT response_excerpt, error FROM delivery_attempts WHERE delivery_id = $1 AND attempt = 1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

async fn status(pool: &PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM deliveries WHERE id = $1").bind(id).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn a_bad_record_does_not_keep_the_others_of_its_batch_out() {
    let (_db, pool, ws) = database().await;
    let (good, too_long, with_nul, good_too) =
        (delivery(&pool, ws).await, delivery(&pool, ws).await, delivery(&pool, ws).await, delivery(&pool, ws).await);
    // No such delivery: refused whatever its text.
    let gone = Uuid::now_v7();
    // Straight to the writer, past the recorder's sanitiser: these break the log's CHECK and PostgreSQL's text.
    let batch = [
        record(good, None, "ok"),
        record(too_long, None, &"x".repeat(2000)),
        record(gone, None, "ok"),
        record(with_nul, Some("bad\0frame"), "ok\0"),
        record(good_too, Some("HTTP 200"), "fine"),
    ];
    assert!(store::record_batch(&pool, &batch).await.is_err(), "the batch as one statement is refused");
    assert_eq!(stored(&pool, good).await, None, "one statement: nothing written");

    let results = store::write_batch(&mut pool.acquire().await.unwrap(), &batch).await;
    assert!(matches!(results[2], Err(RecordError::Refused(_))), "{results:?}");
    for (i, result) in results.iter().enumerate().filter(|(i, _)| *i != 2) {
        assert_eq!(result, &Ok(()), "record {i}: {results:?}");
    }
    assert_eq!(stored(&pool, good).await, Some((Some("ok".into()), None)));
    assert_eq!(stored(&pool, good_too).await, Some((Some("fine".into()), Some("HTTP 200".into()))));
    // The bad ones are in too, degraded: no excerpt, a storable error.
    assert_eq!(stored(&pool, too_long).await, Some((None, None)));
    assert_eq!(stored(&pool, with_nul).await, Some((None, Some("bad\u{FFFD}frame".into()))));
    for id in [good, too_long, with_nul, good_too] {
        assert_eq!(status(&pool, id).await, "succeeded");
    }
    assert_eq!(stored(&pool, gone).await, None);
}

#[tokio::test]
async fn the_recorder_sanitises_what_it_writes() {
    let (_db, pool, ws) = database().await;
    let id = delivery(&pool, ws).await;
    let recorder = Recorder::spawn(pool.clone());
    let excerpt = format!("ok\0{}", "é".repeat(1500));
    recorder.record(record(id, Some("bad\0frame"), &excerpt)).await.expect("recorded");
    let (kept, error) = stored(&pool, id).await.expect("the attempt row");
    let kept = kept.expect("the excerpt is kept, cut to fit");
    // "ok" + U+FFFD (3 bytes) + 509 × "é" (2 bytes) = 1023 bytes: the next "é" would not fit.
    assert_eq!(kept, format!("ok\u{FFFD}{}", "é".repeat(509)));
    assert_eq!(error.as_deref(), Some("bad\u{FFFD}frame"));
    assert_eq!(status(&pool, id).await, "succeeded");
}

#[tokio::test]
async fn an_unreachable_database_is_reported_for_every_record() {
    let (_db, pool, ws) = database().await;
    let (first, second) = (delivery(&pool, ws).await, delivery(&pool, ws).await);
    let recorder = Recorder::spawn(pool.clone());
    // A connection whose server side is gone, then a pool that is closed.
    let mut conn = pool.acquire().await.unwrap();
    let pid = backend_pid(&mut conn).await.unwrap();
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)").bind(pid).fetch_one(&pool).await.unwrap();
    assert!(killed);
    let batch = [record(first, None, "ok"), record(second, None, "x".repeat(2000).as_str())];
    let results = store::write_batch(&mut conn, &batch).await;
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| matches!(r, Err(RecordError::Unavailable(_)))), "{results:?}");
    drop(conn);
    pool.close().await;
    let recorded = recorder.record(record(first, None, "ok")).await;
    assert!(matches!(recorded, Err(RecordError::Unavailable(_))), "{recorded:?}");
}

/// The worker's claim and record pools cache one plan per statement (`connect_key_lookups`), made here on empty tables as
/// on a brand-new database, and each such plan still probes the deliveries' primary key: nothing is planned per
/// call, and no plan depends on what the table held when it was made.
#[tokio::test]
async fn the_claim_and_record_statements_are_planned_once_through_primary_keys() {
    use service_common::db::{connect_key_lookups, Commit};

    let (db, _pool, ws) = database().await;
    let url = secrecy::SecretString::from(db.url.clone());
    let pool = connect_key_lookups(&url, 1, "test", Commit::Async).await.unwrap();
    let lease = Duration::from_secs(30);
    let mut conn = pool.acquire().await.unwrap();
    for _ in 0..3 {
        let (fresh, sent, skipped) =
            (RowChangedEvent::webhook_test(ws), RowChangedEvent::webhook_test(ws), RowChangedEvent::webhook_test(ws));
        store::claim(&mut conn, &sent, &sent.to_payload(), lease).await.unwrap();
        store::release(&mut *conn, sent.id).await.unwrap();
        let requests: Vec<_> = [&fresh, &sent]
            .into_iter()
            .map(|e| store::ClaimRequest { event: Arc::new(e.clone()), raw: e.to_payload().into() })
            .collect();
        let claims = store::claim_many(&mut conn, &requests, lease).await;
        assert!(claims.iter().all(|c| matches!(c, Ok(store::Claim::Ready { .. }))), "{claims:?}");
        store::record_batch(&mut *conn, &[record(sent.id, None, "ok")]).await.unwrap();
        let again = store::claim(&mut conn, &sent, &sent.to_payload(), lease).await.unwrap();
        assert_eq!(again, store::Claim::Ended, "a delivery that succeeded is not claimed again");
        let skip = store::SkipRecord::of(&skipped, &skipped.to_payload(), crm_db::SkipReason::Disabled);
        store::skip_batch(&mut *conn, &[skip]).await.unwrap();
        store::fail_undecodable(&mut *conn, fresh.id, "test").await.unwrap();
    }
    let plans = test_support::prepared_plans(&mut conn).await;
    test_support::assert_planned_once_through_primary_keys(&plans, 8);
}

/// The claimer keeps its connection between batches: a claim costs its statement's round trip, not two more for
/// the pool's tests of a connection it hands out and takes back.
#[tokio::test]
async fn a_claim_costs_one_round_trip() {
    let (db, pool, ws) = database().await;
    let lease = Duration::from_secs(30);
    let events: Vec<_> = (0..10).map(|_| RowChangedEvent::webhook_test(ws)).collect();
    let mut conn = pool.acquire().await.unwrap();
    for event in &events {
        // As crm-api leaves them: there, and not leased.
        store::claim(&mut conn, event, &event.to_payload(), lease).await.unwrap();
        store::release(&mut *conn, event.id).await.unwrap();
    }
    let proxy = test_support::round_trips::RoundTrips::start(&db.url).await;
    let claimer = store::Claimer::spawn(PgPool::connect(&proxy.url).await.unwrap(), lease);
    let request = |e: &RowChangedEvent| store::ClaimRequest { event: Arc::new(e.clone()), raw: e.to_payload().into() };
    assert!(matches!(claimer.claim(request(&events[0])).await, Ok(store::Claim::Ready { .. })));
    let before = proxy.count();
    for event in &events[1..] {
        assert!(matches!(claimer.claim(request(event)).await, Ok(store::Claim::Ready { .. })));
    }
    // One statement per claim, nothing else; a second's idle on a loaded machine adds a test of the connection.
    let round_trips = proxy.count() - before;
    assert!((9..=11).contains(&round_trips), "{round_trips} round trips for nine claims");
}

async fn backend_pid(conn: &mut sqlx::PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(conn).await
}

/// A connection held between batches that died while idle (a PostgreSQL restart, an administrator's kill) is
/// replaced at its next use, as the pool would replace it, instead of failing that use.
#[tokio::test]
async fn a_held_connection_that_died_while_idle_is_replaced_at_its_next_use() {
    let (_db, pool, _) = database().await;
    let mut held = Held::with_checks(pool.clone(), Duration::ZERO, Held::TEST_TIMEOUT);
    let first = backend_pid(held.get().await.unwrap()).await.unwrap();
    assert_eq!(backend_pid(held.get().await.unwrap()).await.unwrap(), first, "the same connection, use after use");
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)").bind(first).fetch_one(&pool).await.unwrap();
    assert!(killed);
    let next = backend_pid(held.get().await.unwrap()).await.expect("a working connection after the old one died");
    assert_ne!(next, first);
}

/// A statement the server refuses leaves the held connection in use; one that finds the connection gone (its
/// backend terminated) closes it, and the next use takes another.
#[tokio::test]
async fn a_held_connection_survives_a_refused_statement_and_is_replaced_after_a_broken_one() {
    let (_db, pool, _) = database().await;
    let mut held = Held::with_checks(pool.clone(), Duration::MAX, Held::TEST_TIMEOUT);
    let first = backend_pid(held.get().await.unwrap()).await.unwrap();
    let refused = sqlx::query("SELECT 1 / 0").execute(held.get().await.unwrap()).await.unwrap_err();
    held.failed(&refused);
    assert_eq!(backend_pid(held.get().await.unwrap()).await.unwrap(), first, "kept after a refusal");
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)").bind(first).fetch_one(&pool).await.unwrap();
    assert!(killed);
    let broken = backend_pid(held.get().await.unwrap()).await.unwrap_err();
    held.failed(&broken);
    assert!(!held.is_held(), "closed after {broken}");
    assert_ne!(backend_pid(held.get().await.unwrap()).await.unwrap(), first);
}

/// A held connection whose network path hangs (no error, no answer) is given up on after its test's time limit,
/// not waited on until TCP gives up.
#[tokio::test]
async fn a_held_connection_that_hangs_is_given_up_on_after_its_test_times_out() {
    let (db, _pool, _) = database().await;
    let proxy = test_support::round_trips::RoundTrips::start(&db.url).await;
    let through_proxy = PgPool::connect(&proxy.url).await.unwrap();
    let mut held = Held::with_checks(through_proxy, Duration::ZERO, Duration::from_millis(200));
    let first = backend_pid(held.get().await.unwrap()).await.unwrap();
    proxy.freeze();
    let next = backend_pid(held.get().await.unwrap()).await.expect("a new connection past the hung one");
    assert_ne!(next, first);
}

/// Work on a held connection that gets no answer (its path hangs mid-statement) is given up on after the work
/// timeout, as an I/O error; the connection is closed and the next use takes another.
#[tokio::test]
async fn work_on_a_held_connection_that_hangs_times_out_and_the_connection_is_replaced() {
    let (db, _pool, _) = database().await;
    let proxy = test_support::round_trips::RoundTrips::start(&db.url).await;
    let through_proxy = PgPool::connect(&proxy.url).await.unwrap();
    let mut held = Held::with_checks(through_proxy, Duration::MAX, Held::TEST_TIMEOUT)
        .with_work_timeout(Duration::from_millis(1500));
    let first = held.run(async |conn| backend_pid(conn).await).await.unwrap();
    proxy.freeze();
    let hung = tokio::time::timeout(Duration::from_secs(8), held.run(async |conn| backend_pid(conn).await))
        .await
        .expect("given up on within the work timeout")
        .unwrap_err();
    assert!(matches!(&hung, sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut), "{hung}");
    assert!(!held.is_held(), "the hung connection is closed");
    let next = held.run(async |conn| backend_pid(conn).await).await.expect("a new connection past the hung one");
    assert_ne!(next, first);
}

/// A connection given back to a pool while its path hangs (its statement dropped mid-way, as a request's timeout
/// drops its handler) is closed within the release test's limit, and its place in the pool serves again: sqlx's
/// own test of a connection given back would wait for it until TCP gives up.
#[tokio::test]
async fn a_connection_given_back_that_hangs_is_closed_and_its_place_freed() {
    let (db, _pool, _) = database().await;
    let proxy = test_support::round_trips::RoundTrips::start(&db.url).await;
    let url = secrecy::SecretString::from(proxy.url.clone());
    let pool = service_common::db::connect(&url, 1, "test").await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let first = backend_pid(&mut conn).await.unwrap();
    proxy.freeze();
    let dropped = tokio::time::timeout(Duration::from_millis(200), backend_pid(&mut conn)).await;
    assert!(dropped.is_err(), "the statement had no answer");
    drop(conn);
    // The release test gives up after 5 s; an acquire waits up to 5 s at a time.
    let started = std::time::Instant::now();
    let next = loop {
        match pool.acquire().await {
            Ok(mut conn) => break backend_pid(&mut conn).await.unwrap(),
            Err(e) => assert!(started.elapsed() < Duration::from_secs(20), "no connection after 20 s: {e}"),
        }
    };
    assert_ne!(next, first);
}
