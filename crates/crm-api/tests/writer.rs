//! The group-commit writer against a real PostgreSQL: changes submitted together commit in one transaction, each
//! with its own answer; one that fails does not fail the others; changes of one row in one batch see each other.
//!
//! The tests run on a current-thread runtime: `join_all` queues every change before the writer task first runs,
//! so they all reach it as one batch.

use crm_api::domain::interest::InterestBody;
use crm_api::domain::{IfMatch, Interest, RowPatch};
use crm_api::error::ApiError;
use crm_api::metrics::{WritePath, WriterMetrics};
use crm_api::relay::Handoff;
use crm_api::service::writer::{Change, IdempotencyKey, Outcome, Writer};
use crm_events::Subjects;
use futures::future::join_all;
use serde_json::json;
use service_common::db::Held;
use sqlx::PgPool;
use std::time::Duration;
use test_support::TestDb;
use uuid::Uuid;

async fn setup() -> (TestDb, PgPool, Writer, Uuid) {
    setup_with_writers(1).await
}

/// A migrated database with one workspace, and a writer of `writers` tasks on it.
async fn setup_with_writers(writers: usize) -> (TestDb, PgPool, Writer, Uuid) {
    let (db, pool, writer, ws, _) = setup_counted(writers).await;
    (db, pool, writer, ws)
}

/// [`setup_with_writers`], with the writer's metrics.
async fn setup_counted(writers: usize) -> (TestDb, PgPool, Writer, Uuid, WriterMetrics) {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    crm_db::migrate(&pool).await.expect("migrations");
    let ws = Uuid::now_v7();
    sqlx::query("INSERT INTO workspaces (id, name) VALUES ($1, 'w')").bind(ws).execute(&pool).await.unwrap();
    // No relay takes the handoff: the events stay in the outbox, where the tests count them.
    let metrics = WriterMetrics::default();
    let writer = Writer::spawn(pool.clone(), Subjects::new("t"), Handoff::new().0, writers, metrics.clone());
    (db, pool, writer, ws, metrics)
}

/// Changes written so far, over every path.
fn changes_written(metrics: &WriterMetrics) -> u64 {
    WritePath::WRITTEN.into_iter().map(|path| metrics.changes(path)).sum()
}

/// Plans the rest of `tx` as the writers' pool does (`service_common::db::connect_key_lookups`): index probes only.
async fn plan_as_the_writers(tx: &mut sqlx::PgConnection) {
    for (setting, value) in service_common::db::KEY_LOOKUP_PLANS {
        sqlx::query(&format!("SET LOCAL {setting} = {value}")).execute(&mut *tx).await.unwrap();
    }
}

fn interest(email: &str) -> Interest {
    let body = json!({"lead": {"email": email}, "interest": {"type": "positive_reply"}});
    serde_json::from_value::<InterestBody>(body).unwrap().validate().unwrap()
}

fn new_lead(ws: Uuid, email: &str) -> Change {
    Change::Interest { workspace_id: ws, interest: interest(email), key: None }
}

fn patch(ws: Uuid, id: Uuid, if_match: Option<&str>, body: serde_json::Value) -> Change {
    let patch = RowPatch::parse(body.as_object().unwrap().clone()).unwrap();
    Change::Patch { workspace_id: ws, id, if_match: if_match.map(IfMatch::parse), patch }
}

fn row(outcome: &Result<Outcome, ApiError>) -> &crm_mapping::CrmRow {
    match outcome {
        Ok(Outcome::Written { row, .. } | Outcome::Unchanged(row)) => row,
        other => panic!("expected a row, got {other:?}"),
    }
}

async fn events(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn changes_submitted_together_commit_together_each_with_its_own_answer() {
    let (_db, pool, writer, ws, metrics) = setup_counted(1).await;
    let changes = (0..20).map(|i| writer.submit(new_lead(ws, &format!("lead{i}@example.com"))));
    let answers = join_all(changes).await;
    let created: Vec<_> = answers.iter().map(row).collect();
    assert!(answers.iter().all(|a| matches!(a, Ok(Outcome::Written { created: true, .. }))));
    // One batch, one transaction: one clock for every row it wrote.
    assert!(created.iter().all(|r| r.created_at == created[0].created_at), "the changes were not one batch");
    assert_eq!(events(&pool).await, 20);
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'pending'").fetch_one(&pool).await.unwrap();
    assert_eq!(pending, 20, "each event's delivery is created with it");
    assert_eq!(
        (metrics.batches(WritePath::Unread), metrics.changes(WritePath::Unread)),
        (1, 20),
        "one batch, one statement, nothing read for leads that are new"
    );
}

/// A writer keeps its connection between batches: a batch costs its statements' round trips (the read and the
/// write, or the write alone for new leads), not two more per statement for the pool's tests of a connection it
/// hands out and takes back.
#[tokio::test]
async fn a_writer_batch_costs_one_round_trip_per_statement() {
    let (db, pool, _, ws) = setup().await;
    let proxy = test_support::round_trips::RoundTrips::start(&db.url).await;
    let writers_pool = sqlx::PgPool::connect(&proxy.url).await.unwrap();
    let metrics = WriterMetrics::default();
    let writer = Writer::spawn(writers_pool, Subjects::new("t"), Handoff::new().0, 1, metrics.clone());
    writer.submit(new_lead(ws, "first@example.com")).await.unwrap();
    let before = proxy.count();
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(row(&writer.submit(new_lead(ws, &format!("lead{i}@example.com"))).await).id);
    }
    assert_eq!(metrics.batches(WritePath::Unread), 11, "each new lead a batch of its own, in one statement");
    // The write alone for new leads; a second's idle on a loaded machine adds a test of the connection.
    let round_trips = proxy.count() - before;
    assert!((10..=12).contains(&round_trips), "{round_trips} round trips for ten batches of new leads");
    let before = proxy.count();
    for id in ids {
        writer.submit(patch(ws, id, None, json!({"notes": "called"}))).await.unwrap();
    }
    assert_eq!(metrics.batches(WritePath::Statement), 10, "each edit a batch of its own, read and written");
    let round_trips = proxy.count() - before;
    assert!((20..=22).contains(&round_trips), "{round_trips} round trips for ten batches of edits");
    assert_eq!(events(&pool).await, 21);
}

/// An interest in a lead that exists but that this writer has not written (another replica did, or an earlier
/// process), written unread (as new), is refused whole by its statement and then read and written as an update of
/// that lead: the answer is the same as if it had been read first. A repeat interest in a lead the writer wrote
/// itself is read first.
#[tokio::test]
async fn an_unread_write_that_finds_its_lead_existing_is_read_and_written_again() {
    let (_db, pool, other_replica, ws) = setup().await;
    let first = other_replica.submit(new_lead(ws, "known@example.com")).await;
    assert!(matches!(first, Ok(Outcome::Written { created: true, .. })), "{first:?}");
    let metrics = WriterMetrics::default();
    let writer = Writer::spawn(pool.clone(), Subjects::new("t"), Handoff::new().0, 1, metrics.clone());
    let again = writer.submit(new_lead(ws, "Known@Example.com")).await;
    assert!(matches!(again, Ok(Outcome::Written { created: false, .. })), "{again:?}");
    assert_eq!(row(&again).id, row(&first).id);
    assert_eq!(row(&again).interest_count, 2);
    assert_eq!(metrics.unread_misses.get(), 1);
    assert_eq!((metrics.batches(WritePath::Unread), metrics.batches(WritePath::Statement)), (0, 1));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM crm_rows").fetch_one(&pool).await.unwrap();
    assert_eq!((rows, events(&pool).await), (1, 2), "one lead, an event per change, nothing from the refused try");
    let third = writer.submit(new_lead(ws, "known@example.com")).await;
    assert_eq!(row(&third).interest_count, 3);
    assert_eq!(metrics.unread_misses.get(), 1, "a lead it has written is read first");
    assert_eq!(metrics.batches(WritePath::Statement), 2);
}

/// A writer whose interests keep finding leads it does not know (a campaign's replies to leads imported through
/// another replica) stops writing unread after a miss or two: each batch then costs its read and its write, not a
/// refused write as well.
#[tokio::test]
async fn a_writer_whose_interests_find_unknown_leads_reads_first() {
    let (db, _pool, other_replica, ws) = setup().await;
    for i in 0..10 {
        other_replica.submit(new_lead(ws, &format!("lead{i}@example.com"))).await.unwrap();
    }
    let proxy = test_support::round_trips::RoundTrips::start(&db.url).await;
    let writers_pool = sqlx::PgPool::connect(&proxy.url).await.unwrap();
    let metrics = WriterMetrics::default();
    let writer = Writer::spawn(writers_pool, Subjects::new("t"), Handoff::new().0, 1, metrics.clone());
    for i in 0..5 {
        writer.submit(new_lead(ws, &format!("lead{i}@example.com"))).await.unwrap();
    }
    let misses = metrics.unread_misses.get();
    assert!((1..=3).contains(&misses), "{misses} unread writes refused");
    let before = proxy.count();
    for i in 5..10 {
        let answer = writer.submit(new_lead(ws, &format!("lead{i}@example.com"))).await;
        assert!(matches!(answer, Ok(Outcome::Written { created: false, .. })), "{answer:?}");
    }
    assert_eq!(metrics.unread_misses.get(), misses, "no more unread tries");
    let round_trips = proxy.count() - before;
    assert!((10..=12).contains(&round_trips), "{round_trips} round trips for five batches, each read and written");
}

/// A batch whose connection hangs (no error, no answer: a host gone without a reset) is answered `503` after the
/// writer's work timeout, not held until TCP gives up; the writer goes on with another connection.
#[tokio::test]
async fn a_batch_on_a_connection_that_hangs_is_answered_unavailable_after_the_work_timeout() {
    let (db, pool, _, ws) = setup().await;
    let proxy = test_support::round_trips::RoundTrips::start(&db.url).await;
    let writers_pool = sqlx::PgPool::connect(&proxy.url).await.unwrap();
    // No idle test (it would find the hang by itself, within its own limit): only the work timeout is at play.
    let hold =
        |pool| Held::with_checks(pool, Duration::MAX, Held::TEST_TIMEOUT).with_work_timeout(Duration::from_secs(2));
    let writer =
        Writer::spawn_holding(writers_pool, Subjects::new("t"), Handoff::new().0, 1, WriterMetrics::default(), hold);
    writer.submit(new_lead(ws, "first@example.com")).await.unwrap();
    proxy.freeze();
    let hung = tokio::time::timeout(Duration::from_secs(8), writer.submit(new_lead(ws, "hung@example.com")))
        .await
        .expect("an answer within the work timeout");
    assert!(matches!(hung, Err(ApiError::Unavailable)), "{hung:?}");
    writer.submit(new_lead(ws, "after@example.com")).await.expect("written on a new connection");
    assert_eq!(events(&pool).await, 2, "the hung batch never reached the server");
}

/// A statement the server ends itself (its `statement_timeout`, a shutdown) is the database being unavailable:
/// `503`, not an internal error.
#[tokio::test]
async fn a_statement_the_server_cancels_is_unavailable_not_internal() {
    let (_db, pool, _, _) = setup().await;
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET statement_timeout = '10ms'").execute(&mut *conn).await.unwrap();
    let cancelled = sqlx::query("SELECT pg_sleep(1)").execute(&mut *conn).await.unwrap_err();
    assert!(matches!(ApiError::from(cancelled), ApiError::Unavailable));
    let refused = sqlx::query("SELECT 1 / 0").execute(&mut *conn).await.unwrap_err();
    assert!(matches!(ApiError::from(refused), ApiError::Internal(_)));
}

/// The hot-path pools carry the server's own limits, below the client's work timeout.
#[tokio::test]
async fn hot_path_pools_carry_the_servers_limits() {
    let (db, _pool, _, _) = setup().await;
    let url = secrecy::SecretString::from(db.url.clone());
    let pool =
        service_common::db::connect_key_lookups(&url, 1, "test", service_common::db::Commit::Durable).await.unwrap();
    let show = |name: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, String>(&format!("SHOW {name}")).fetch_one(&pool).await.unwrap() }
    };
    assert_eq!(show("statement_timeout").await, "8s");
    assert_eq!(show("idle_in_transaction_session_timeout").await, "15s");
}

/// A batch of new leads written unread in which one lead exists (written by another replica) and one is named twice
/// in two spellings: refused whole, then read and written, each change answered as if it had been read first.
#[tokio::test]
async fn an_unread_batch_with_an_existing_lead_answers_each_change_as_read() {
    let (_db, pool, other_replica, ws) = setup().await;
    let existing = row(&other_replica.submit(new_lead(ws, "old@example.com")).await).id;
    let metrics = WriterMetrics::default();
    let writer = Writer::spawn(pool.clone(), Subjects::new("t"), Handoff::new().0, 1, metrics.clone());
    let changes = ["new@example.com", "OLD@example.com", "New@Example.com"].map(|e| writer.submit(new_lead(ws, e)));
    let answers = join_all(changes).await;
    assert!(matches!(answers[0], Ok(Outcome::Written { created: true, .. })), "{answers:?}");
    assert!(matches!(answers[1], Ok(Outcome::Written { created: false, .. })), "{answers:?}");
    assert!(matches!(answers[2], Ok(Outcome::Written { created: false, .. })), "{answers:?}");
    assert_eq!(row(&answers[1]).id, existing);
    assert_eq!(row(&answers[2]).id, row(&answers[0]).id, "one lead for both spellings");
    assert_eq!(row(&answers[2]).interest_count, 2);
    assert_eq!(metrics.unread_misses.get(), 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM crm_rows").fetch_one(&pool).await.unwrap();
    assert_eq!((rows, events(&pool).await), (2, 4));
}

/// A batch that cannot reach the database is answered `503` whole: its changes are not tried one by one, each
/// waiting for a connection in turn.
#[tokio::test]
async fn a_batch_without_a_database_is_answered_unavailable_at_once() {
    let ws = Uuid::now_v7();
    // A proxy to a port nothing listens on: each connection attempt is one connection to the proxy, refused at once.
    let proxy = test_support::round_trips::RoundTrips::start(&format!(
        "postgres://postgres@127.0.0.1:{}/none",
        test_support::free_port()
    ))
    .await;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_lazy(&proxy.url).unwrap();
    let writer = Writer::spawn(pool, Subjects::new("t"), Handoff::new().0, 1, WriterMetrics::default());
    let changes = (0..8).map(|i| writer.submit(new_lead(ws, &format!("lead{i}@example.com"))));
    let answers = join_all(changes).await;
    assert!(answers.iter().all(|a| matches!(a, Err(ApiError::Unavailable))), "{answers:?}");
    assert_eq!(proxy.connections(), 1, "one try for the batch, not one more per change");
}

#[tokio::test]
async fn one_bad_change_does_not_fail_its_batch() {
    let (_db, pool, writer, ws, metrics) = setup_counted(1).await;
    writer.submit(new_lead(ws, "ada@example.com")).await.unwrap();
    let grace = writer.submit(new_lead(ws, "grace@example.com")).await.unwrap();
    let grace_id = match grace {
        Outcome::Written { row, .. } => row.id,
        other => panic!("{other:?}"),
    };
    let before = events(&pool).await;
    let mut changes = vec![writer.submit(patch(ws, grace_id, None, json!({"email": "ADA@example.com"})))];
    changes.extend((0..10).map(|i| writer.submit(new_lead(ws, &format!("n{i}@example.com")))));
    let answers = join_all(changes).await;
    assert!(
        matches!(&answers[0], Err(ApiError::Conflict { field: Some("email"), .. })),
        "the taken email is a 409: {:?}",
        answers[0]
    );
    for answer in &answers[1..] {
        assert!(matches!(answer, Ok(Outcome::Written { created: true, .. })), "{answer:?}");
    }
    assert_eq!(events(&pool).await - before, 10, "the ten good changes, each with its event");
    assert!(metrics.batches(WritePath::Failed) >= 1, "the batch with the taken email failed as a whole");
    assert_eq!(changes_written(&metrics), 12, "two leads first, then the ten good changes");
}

#[tokio::test]
async fn changes_of_one_row_in_one_batch_see_each_other() {
    let (_db, pool, writer, ws) = setup().await;
    // Three interests of one new lead: created, then counted twice.
    let answers = join_all((0..3).map(|_| writer.submit(new_lead(ws, "lin@example.com")))).await;
    let versions: Vec<i64> = answers.iter().map(|a| row(a).version).collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(row(&answers[2]).interest_count, 3);
    assert!(matches!(answers[0], Ok(Outcome::Written { created: true, .. })));
    let stored: Vec<(i64, String)> = sqlx::query_as(
        "SELECT (convert_from(d.event, 'UTF8')::jsonb -> 'row' ->> 'version')::int8, o.msg_id::text
               FROM outbox o JOIN deliveries d ON d.id = o.msg_id ORDER BY o.seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [1, 2, 3], "one event per version, in order");

    // Two edits that both saw version 3: the first wins, the second is stale.
    let id = row(&answers[0]).id;
    let edits = vec![
        writer.submit(patch(ws, id, Some("\"3\""), json!({"owner": "Ada"}))),
        writer.submit(patch(ws, id, Some("\"3\""), json!({"owner": "Grace"}))),
    ];
    let edits = join_all(edits).await;
    assert_eq!(row(&edits[0]).version, 4);
    assert!(matches!(edits[1], Err(ApiError::PreconditionFailed { current: 4 })), "{:?}", edits[1]);
}

#[tokio::test]
async fn a_key_sent_twice_in_one_batch_is_written_once_and_replayed() {
    let (_db, pool, writer, ws) = setup().await;
    let key = || Some(IdempotencyKey { key: "k-1".into(), request_hash: vec![7; 32] });
    let keyed = || Change::Interest { workspace_id: ws, interest: interest("kay@example.com"), key: key() };
    let answers = join_all([writer.submit(keyed()), writer.submit(keyed())]).await;
    assert!(matches!(answers[0], Ok(Outcome::Written { created: true, .. })), "{:?}", answers[0]);
    assert!(matches!(&answers[1], Ok(Outcome::Replayed { status: 201, .. })), "{:?}", answers[1]);
    assert_eq!(events(&pool).await, 1);
}

/// Rows, outbox rows, deliveries and keys in the database.
async fn written(pool: &PgPool) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM crm_rows), (SELECT count(*) FROM outbox), (SELECT count(*) FROM deliveries),
                (SELECT count(*) FROM idempotency_keys)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

fn is_serialization_failure(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("40001"))
}

/// Writes a batch of one new row, some changed rows, their events and keys in one statement.
async fn write_batch(
    pool: &PgPool,
    new: &crm_mapping::CrmRow,
    changed: &[(&crm_mapping::CrmRow, i64)],
    events: &[crm_events::RowChangedEvent],
    messages: &[crm_api::repo::outbox::NewEvent<'_>],
    keys: &[crm_api::repo::batch::KeyResponse<'_>],
) -> Result<std::collections::HashMap<Uuid, i64>, sqlx::Error> {
    let events: Vec<_> = events.iter().collect();
    let batch = crm_api::repo::batch::Batch { new: &[new], changed, events: &events, messages, keys };
    crm_api::repo::batch::write(pool, &batch).await
}

#[tokio::test]
async fn rows_read_for_a_change_come_once_each_in_id_order_however_the_batch_names_them() {
    use crm_api::repo::rows;

    let (_db, pool, writer, ws) = setup().await;
    let ada = row(&writer.submit(new_lead(ws, "ada@example.com")).await).clone();
    let lin = row(&writer.submit(new_lead(ws, "lin@example.com")).await).clone();
    // Ada by email (in another case) and by id, Lin by id twice, and an email nobody has.
    let emails = [(ws, "ADA@example.com".to_owned()), (ws, "nobody@example.com".to_owned())];
    let ids = [(ws, lin.id), (ws, ada.id), (ws, lin.id)];
    let read = rows::read_for_change(&pool, &emails, &ids).await.unwrap();
    let mut expected = vec![ada, lin];
    expected.sort_by_key(|r| r.id);
    assert_eq!(read, expected);
}

#[tokio::test]
async fn the_one_statement_write_is_refused_whole_when_what_it_read_has_changed() {
    use crm_api::repo::{outbox::NewEvent, rows};
    use crm_events::Trigger;

    let (_db, pool, writer, ws) = setup().await;
    let ada = row(&writer.submit(new_lead(ws, "ada@example.com")).await).clone();
    let read = rows::read_for_change(&pool, &[], &[(ws, ada.id)]).await.unwrap().remove(0);
    assert_eq!(read, ada);
    // Another writer moves the row on after it was read.
    writer.submit(patch(ws, ada.id, None, json!({"owner": "Grace"}))).await.unwrap();
    let before = written(&pool).await;

    // A stale change of the row, a new lead, and a key, in one statement.
    let stale = crm_mapping::CrmRow { version: read.version + 1, notes: Some("stale".into()), ..read.clone() };
    let fresh = crm_mapping::CrmRow { id: Uuid::now_v7(), email: "lin@example.com".into(), ..read.clone() };
    let change = crm_api::domain::Change { before: Some(read.clone()), after: stale.clone() };
    let created = crm_api::domain::Change { before: None, after: fresh.clone() };
    let events = [change.event(Trigger::CrmEdit), created.event(Trigger::LeadInterest)];
    let headers = Default::default();
    let subjects = Subjects::new("t");
    let messages: Vec<NewEvent> = events.iter().map(|e| NewEvent::of(&subjects, e, &headers)).collect();
    let keys = [crm_api::repo::batch::KeyResponse {
        workspace_id: ws,
        key: "k-2",
        request_hash: &[1u8; 32],
        status: 201,
        body: b"{}",
    }];
    let refused = write_batch(&pool, &fresh, &[(&stale, read.version)], &events, &messages, &keys)
        .await
        .expect_err("the row moved on");
    assert!(is_serialization_failure(&refused), "{refused:?}");
    assert_eq!(written(&pool).await, before, "nothing of the batch was written");

    // A key that is there already refuses the batch the same way.
    sqlx::query("INSERT INTO idempotency_keys (workspace_id, key, request_hash) VALUES ($1, 'k-2', '\\x00')")
        .bind(ws)
        .execute(&pool)
        .await
        .unwrap();
    let current = rows::read_for_change(&pool, &[], &[(ws, ada.id)]).await.unwrap().remove(0);
    let stale = crm_mapping::CrmRow { version: current.version + 1, ..current.clone() };
    let refused = write_batch(&pool, &fresh, &[(&stale, current.version)], &events, &messages, &keys)
        .await
        .expect_err("the key exists");
    assert!(is_serialization_failure(&refused), "{refused:?}");
    assert_eq!(written(&pool).await, (before.0, before.1, before.2, before.3 + 1), "only the key inserted above");

    // With the version as it is now and no key in the way, the same batch goes through whole.
    let seqs =
        write_batch(&pool, &fresh, &[(&stale, current.version)], &events, &messages, &[]).await.expect("written");
    assert_eq!(seqs.len(), 2, "both events have their outbox row");
    assert_eq!(written(&pool).await, (before.0 + 1, before.1 + 2, before.2 + 2, before.3 + 1));
}

#[tokio::test]
async fn a_replay_after_its_first_request_committed_is_answered_from_the_key() {
    let (_db, pool, writer, ws) = setup().await;
    let keyed = || Change::Interest {
        workspace_id: ws,
        interest: interest("kay@example.com"),
        key: Some(IdempotencyKey { key: "k-3".into(), request_hash: vec![9; 32] }),
    };
    let first = writer.submit(keyed()).await;
    assert!(matches!(first, Ok(Outcome::Written { created: true, .. })), "{first:?}");
    let again = writer.submit(keyed()).await;
    assert!(matches!(&again, Ok(Outcome::Replayed { status: 201, .. })), "{again:?}");
    assert_eq!(events(&pool).await, 1, "the replay emitted nothing");
}

#[tokio::test]
async fn a_row_changed_by_a_concurrent_transaction_is_still_locked_and_read_in_its_new_version() {
    use crm_api::repo::rows;

    let (_db, pool, writer, ws) = setup().await;
    let ada = row(&writer.submit(new_lead(ws, "ada@example.com")).await).clone();
    // Another batch holds the row, locked and changed but not yet committed.
    let mut other = pool.begin().await.unwrap();
    rows::lock_for_change(&mut other, &[], &[(ws, ada.id)]).await.unwrap();
    sqlx::query("UPDATE crm_rows SET version = version + 1, owner = 'Grace' WHERE id = $1")
        .bind(ada.id)
        .execute(&mut *other)
        .await
        .unwrap();
    // A batch locks the row by id and by email meanwhile: it waits for the other transaction...
    let locking = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            plan_as_the_writers(&mut tx).await;
            let by_id = rows::lock_for_change(&mut tx, &[], &[(ws, ada.id)]).await.unwrap();
            let by_email = rows::lock_for_change(&mut tx, &[(ws, "ADA@example.com".into())], &[]).await.unwrap();
            (by_id, by_email)
        })
    };
    until_someone_waits_for_a_lock(&pool).await;
    other.commit().await.unwrap();
    // ...and then gets the row in the version the other one committed, not nothing.
    let (by_id, by_email) = locking.await.unwrap();
    assert_eq!(by_id.iter().map(|r| (r.id, r.version)).collect::<Vec<_>>(), [(ada.id, ada.version + 1)]);
    assert_eq!(by_email.iter().map(|r| r.owner.as_deref()).collect::<Vec<_>>(), [Some("Grace")]);
}

/// Waits until some session of this database waits for a row lock.
async fn until_someone_waits_for_a_lock(pool: &PgPool) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("nobody waited for the row lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_racing_on_a_few_rows_all_find_their_row() {
    // Two writers, so batches race for the same rows: their one-statement writes refuse each other and go through
    // the locking transaction, where a row is waited for while the other batch changes it.
    let (_db, pool, writer, ws, metrics) = setup_counted(2).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(row(&writer.submit(new_lead(ws, &format!("hot{i}@example.com"))).await).id);
    }
    // Eight editors, each editing the rows in turn, fifty times: batches keep meeting on the same rows.
    let editors = (0..8).map(|e| {
        let (writer, ids) = (writer.clone(), ids.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for n in 0..50 {
                let change = patch(ws, ids[(e + n) % ids.len()], None, json!({"notes": format!("edit {e}.{n}")}));
                answers.push(writer.submit(change).await);
            }
            answers
        })
    });
    let answers: Vec<_> = join_all(editors).await.into_iter().flat_map(|a| a.unwrap()).collect();
    let failed: Vec<_> = answers.iter().filter(|a| !matches!(a, Ok(Outcome::Written { .. }))).collect();
    assert!(failed.is_empty(), "{} of 400 edits failed, e.g. {:?}", failed.len(), failed.first());
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM crm_rows ORDER BY email").fetch_all(&pool).await.unwrap();
    assert_eq!(versions, [101, 101, 101, 101], "every edit is one new version");
    assert_eq!(changes_written(&metrics), 404, "every change is counted once, by the path its batch took");
    assert_eq!(metrics.batches(WritePath::Failed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_locking_the_same_rows_at_once_each_get_every_row_they_ask_for() {
    use crm_api::repo::rows;

    let (_db, pool, writer, ws) = setup().await;
    let mut leads = Vec::new();
    for i in 0..6 {
        let lead = row(&writer.submit(new_lead(ws, &format!("lock{i}@example.com"))).await).clone();
        leads.push((lead.id, lead.email));
    }
    // Eight transactions at a time lock two rows by email and two by id, change them, and commit, as the writers'
    // locking path does; each must get all four rows every time, whoever changed them while it waited.
    let batches = (0..8).map(|t| {
        let (pool, leads) = (pool.clone(), leads.clone());
        tokio::spawn(async move {
            let mut short = 0;
            for n in 0..40 {
                let pick = |k: usize| &leads[(t * 7 + n * 3 + k) % leads.len()];
                let emails = vec![(ws, pick(0).1.to_uppercase()), (ws, pick(1).1.clone())];
                let ids = vec![(ws, pick(2).0), (ws, pick(3).0)];
                let wanted: std::collections::HashSet<Uuid> = [pick(0).0, pick(1).0, pick(2).0, pick(3).0].into();
                let mut tx = pool.begin().await.unwrap();
                plan_as_the_writers(&mut tx).await;
                let locked = rows::lock_for_change(&mut tx, &emails, &ids).await.unwrap();
                let got: std::collections::HashSet<Uuid> = locked.iter().map(|r| r.id).collect();
                if got != wanted {
                    short += 1;
                }
                let changed: Vec<crm_mapping::CrmRow> =
                    locked.iter().map(|r| crm_mapping::CrmRow { version: r.version + 1, ..r.clone() }).collect();
                let changed: Vec<(&crm_mapping::CrmRow, i64)> = changed.iter().map(|r| (r, r.version - 1)).collect();
                rows::update(&mut tx, &changed).await.unwrap();
                tx.commit().await.unwrap();
            }
            short
        })
    });
    let short: usize = join_all(batches).await.into_iter().map(|s| s.unwrap()).sum();
    assert_eq!(short, 0, "{short} of 320 locking reads came back without a row they asked for");
}
