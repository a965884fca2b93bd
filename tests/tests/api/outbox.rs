//! The transactional outbox and its relay: one stream message per effective change, nothing lost while NATS is
//! down, no second message after a relay dies between publishing and marking, replicas sharing the work.

use crm_api::relay;
use crm_api::repo::outbox;
use crm_tests::api::interest_body;
use crm_tests::{base_env, eventually, stream, ApiProcess, NatsServer, TestApp, TestDb, TestStream};
use serde_json::json;
use std::time::Duration;

fn metric(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse::<f64>().ok())).unwrap_or(0.0)
        as u64
}

/// Rows in the outbox: events not yet published, or published and not yet deleted.
async fn outbox_len(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(pool).await.unwrap()
}

/// A database and a stream as crm-api made them, with one workspace, and crm-api stopped again: for tests that
/// drive the outbox and a relay themselves.
async fn made_by_a_stopped_crm_api(
    workspace: &str,
) -> (TestDb, TestStream, uuid::Uuid, async_nats::jetstream::Context) {
    let db = TestDb::create().await;
    let names = TestStream::new(&crm_tests::shared_nats_url());
    let process = ApiProcess::start(base_env(&db, &names)).await;
    let ws = process.api.create_workspace(workspace).await;
    let js = names.jetstream().await;
    eventually(Duration::from_secs(10), || async { js.get_stream(&names.stream).await.is_ok() }).await;
    process.stop().await;
    (db, names, ws, js)
}

/// A relay of the test's own on `pool` and `js`, batches of 100.
fn own_relay(pool: sqlx::PgPool, js: &async_nats::jetstream::Context, poll_interval: Duration) -> relay::Relay {
    relay::Relay::new(
        pool,
        service_common::nats::jetstream(js.client()),
        crm_api::metrics::ApiMetrics::new(),
        100,
        poll_interval,
    )
}

fn schema_validator() -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto-schemas/crm-event.v1.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("schema file")).expect("schema is JSON");
    jsonschema::options().should_validate_formats(true).build(&schema).expect("schema compiles")
}

#[tokio::test]
async fn one_schema_valid_message_per_effective_change() {
    let app = TestApp::spawn().await;
    let (ws, token) = app.workspace_with_token("admin").await;
    let mut effective = 0;
    for i in 0..5 {
        app.api.interest(ws, &token, &format!("p{i}@example.com")).await.expect(201);
        effective += 1;
    }
    let row = app.api.interest(ws, &token, "p0@example.com").await.expect(200).json();
    effective += 1;
    let path = format!("/v1/workspaces/{ws}/crm/rows/{}", row["id"].as_str().unwrap());
    app.api
        .patch(&path, Some(&token), &json!({"owner": "grace", "next_step_at": "2026-12-01T10:00:00+01:00"}), &[])
        .await
        .expect(200);
    effective += 1;
    app.api.patch(&path, Some(&token), &json!({"owner": "grace"}), &[]).await.expect(200); // no-op
    app.api.post(&format!("/v1/workspaces/{ws}/settings/crm-webhook/test"), Some(&token), &json!({})).await.expect(202);
    effective += 1;

    app.wait_outbox_drained().await;
    let js = app.stream.jetstream().await;
    let messages = stream::messages(&js, &app.stream.stream).await;
    assert_eq!(messages.len(), effective);
    let validator = schema_validator();
    for m in &messages {
        let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&body).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "{errors:?} in {body}");
        assert_eq!(m.subject.as_str(), format!("{}.row.changed.{ws}", app.stream.prefix));
        let msg_id = m.headers.get("Nats-Msg-Id").expect("Nats-Msg-Id").as_str();
        assert_eq!(msg_id, body["id"].as_str().unwrap(), "Nats-Msg-Id is the event id");
    }
    // A body with an unknown field or a bad stage does not validate: the schema is strict.
    let mut tampered: serde_json::Value = serde_json::from_slice(&messages[0].payload).unwrap();
    tampered["row"]["pipeline_stage"] = json!("closed");
    assert!(!validator.is_valid(&tampered));
    let mut extra: serde_json::Value = serde_json::from_slice(&messages[0].payload).unwrap();
    extra["secret"] = json!("x");
    assert!(!validator.is_valid(&extra));
}

#[tokio::test]
async fn nothing_is_lost_while_nats_is_down() {
    crm_tests::init_logging();
    let mut nats = NatsServer::start().await;
    let db = TestDb::create().await;
    let stream_names = TestStream::new(&nats.url());
    let process = ApiProcess::start(base_env(&db, &stream_names)).await;
    let api = process.api.clone();
    let ws = api.create_workspace("Outage").await;
    let token = api.create_token(ws, "editor").await;
    api.interest(ws, &token, "before@example.com").await.expect(201);
    let js = stream_names.jetstream().await;
    eventually(Duration::from_secs(15), || async { stream::message_count(&js, &stream_names.stream).await == 1 }).await;
    let pool = db.pool().await;
    // Its row goes too, with the next delete of the direct path's.
    eventually(Duration::from_secs(10), || async { outbox_len(&pool).await == 0 }).await;

    nats.kill().await;
    for i in 0..10 {
        // The API answers at once: the request path never waits for NATS.
        api.interest(ws, &token, &format!("during{i}@example.com")).await.expect(201);
    }
    assert_eq!(outbox_len(&pool).await, 10, "events wait in the outbox while NATS is down");

    nats.restart().await;
    let js = stream_names.jetstream().await;
    eventually(Duration::from_secs(30), || async { stream::message_count(&js, &stream_names.stream).await == 11 })
        .await;
    eventually(Duration::from_secs(10), || async { outbox_len(&pool).await == 0 }).await;
    let emails: std::collections::HashSet<String> =
        stream::events(&js, &stream_names.stream).await.into_iter().map(|e| e.row.unwrap().email).collect();
    assert_eq!(emails.len(), 11);
    process.stop().await;
}

#[tokio::test]
async fn a_relay_that_dies_after_publishing_does_not_duplicate() {
    crm_tests::init_logging();
    // Let crm-api create the stream, stop it, and commit three events while no relay runs.
    let (db, names, ws, js) = made_by_a_stopped_crm_api("Crash").await;
    let pool = db.pool().await;
    let subjects = crm_events::Subjects::new(names.prefix.clone());
    let headers = Default::default();
    for _ in 0..3 {
        let mut conn = pool.acquire().await.unwrap();
        let event = crm_events::RowChangedEvent::webhook_test(ws);
        outbox::enqueue(&mut conn, &outbox::NewEvent::of(&subjects, &event, &headers)).await.unwrap();
    }

    // A relay takes the batch and publishes it, then "dies" before committing: its transaction rolls back and
    // the rows are back in the outbox.
    {
        let mut tx = pool.begin().await.unwrap();
        let claimed = outbox::take(&mut tx, 100, relay::DIRECT_GRACE).await.unwrap();
        assert_eq!(claimed.len(), 3);
        let stats = relay::publish(&service_common::nats::jetstream(js.client()), &claimed).await.unwrap().stats;
        assert_eq!(stats, relay::PassStats { published: 3, duplicates: 0, parked: 0 });
        drop(tx);
    }
    assert_eq!(stream::message_count(&js, &names.stream).await, 3);

    // The next relay republishes the same batch: the stream stores each event once.
    let process = ApiProcess::start(base_env(&db, &names)).await;
    let api = process.api.clone();
    eventually(Duration::from_secs(10), || async { outbox_len(&pool).await == 0 }).await;
    assert_eq!(stream::message_count(&js, &names.stream).await, 3);
    let metrics = api.get("/metrics", None).await.text;
    assert_eq!(metric(&metrics, "crm_outbox_duplicates_total"), 3, "{metrics}");
    process.stop().await;
}

#[tokio::test]
async fn two_replicas_share_the_outbox_without_double_publishing() {
    let app = TestApp::spawn().await;
    let second = ApiProcess::start(base_env(&app.db, &app.stream)).await;
    let (ws, token) = app.workspace_with_token("editor").await;
    let apis = [app.api.clone(), second.api.clone()];
    let mut tasks = Vec::new();
    for i in 0..120 {
        let api = apis[i % 2].clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            api.post(
                &format!("/v1/workspaces/{ws}/crm/interest"),
                Some(&token),
                &interest_body(&format!("r{i}@example.com")),
            )
            .await
            .expect(201);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    app.wait_outbox_drained().await;
    let js = app.stream.jetstream().await;
    assert_eq!(stream::message_count(&js, &app.stream.stream).await, 120);
    let mut published = 0;
    let mut duplicates = 0;
    for api in &apis {
        let text = api.get("/metrics", None).await.text;
        published += metric(&text, "crm_outbox_published_total");
        duplicates += metric(&text, "crm_outbox_duplicates_total");
    }
    assert_eq!((published, duplicates), (120, 0), "SKIP LOCKED gives each replica disjoint batches");
    second.stop().await;
}

#[tokio::test]
async fn the_direct_path_leaves_events_handed_over_too_long_ago_to_the_passes() {
    crm_tests::init_logging();
    // Let crm-api create the stream, then drive a relay of our own.
    let (db, names, ws, js) = made_by_a_stopped_crm_api("Late").await;
    let relay = own_relay(db.pool().await, &js, Duration::from_secs(1));
    let subjects = crm_events::Subjects::new(names.prefix.clone());
    let handed = |age: Duration| {
        let event = crm_events::RowChangedEvent::webhook_test(ws);
        outbox::Pending {
            seq: 1,
            msg_id: event.id,
            subject: subjects.row_changed(ws),
            payload: event.to_bytes(),
            headers: sqlx::types::Json(Default::default()),
            created_at: chrono::Utc::now() - chrono::Duration::from_std(age).unwrap(),
        }
    };
    // Handed over longer ago than the grace (say, queued behind a NATS outage): a pass's now, which may have
    // published it already; the direct path does not publish it again.
    assert!(!relay.publish_handed(vec![handed(relay::DIRECT_GRACE + Duration::from_secs(1))]).await);
    assert_eq!(stream::message_count(&js, &names.stream).await, 0);
    // Handed over just now: published at once.
    assert!(relay.publish_handed(vec![handed(Duration::ZERO)]).await);
    assert_eq!(stream::message_count(&js, &names.stream).await, 1);
}

#[tokio::test]
async fn the_direct_path_deletes_what_it_published_together_and_before_it_stops() {
    crm_tests::init_logging();
    let (db, names, ws, js) = made_by_a_stopped_crm_api("Deletes").await;
    let pool = db.pool().await;
    // Every statement that deletes outbox rows, with how many.
    sqlx::raw_sql(
        "CREATE TABLE outbox_deletes (n bigint NOT NULL);
         CREATE FUNCTION count_outbox_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO outbox_deletes SELECT count(*) FROM gone HAVING count(*) > 0;
             RETURN NULL;
         END $$;
         CREATE TRIGGER count_outbox_deletes AFTER DELETE ON outbox REFERENCING OLD TABLE AS gone
             FOR EACH STATEMENT EXECUTE FUNCTION count_outbox_deletes();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let relay = || own_relay(pool.clone(), &js, Duration::from_secs(600));
    let subjects = crm_events::Subjects::new(names.prefix.clone());
    let published = std::sync::atomic::AtomicU64::new(0);
    // As a writer commits an event: an outbox row without a body of its own, then the batch handed over; returns
    // once the event is in the stream.
    let hand_one = async |handoff: &relay::Handoff| {
        let event = crm_events::RowChangedEvent::webhook_test(ws);
        let seq: i64 = sqlx::query_scalar("INSERT INTO outbox (msg_id, subject) VALUES ($1, $2) RETURNING seq")
            .bind(event.id)
            .bind(subjects.row_changed(ws))
            .fetch_one(&pool)
            .await
            .unwrap();
        handoff.hand(vec![outbox::Pending {
            seq,
            msg_id: event.id,
            subject: subjects.row_changed(ws),
            payload: event.to_bytes(),
            headers: sqlx::types::Json(Default::default()),
            created_at: chrono::Utc::now(),
        }]);
        let n = published.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        eventually(Duration::from_secs(10), || async { stream::message_count(&js, &names.stream).await == n }).await;
    };

    // Gathering for longer than the test runs: ten batches, each published on its own (the next is handed over
    // once the last is in the stream), are deleted together when the relay stops, not one statement per batch.
    let (handoff, handed) = relay::Handoff::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(relay().deleting_every(Duration::from_secs(600)).run(handed, shutdown.clone()));
    for _ in 0..10 {
        hand_one(&handoff).await;
    }
    shutdown.cancel();
    running.await.unwrap();
    assert_eq!(outbox_len(&pool).await, 0, "what was published is deleted before the relay returns");
    let statements: Vec<i64> = sqlx::query_scalar("SELECT n FROM outbox_deletes").fetch_all(&pool).await.unwrap();
    assert_eq!(statements.iter().sum::<i64>(), 10, "{statements:?}");
    // One at the stop; one more if the relay's listener connected after a handover (a new connection asks for a
    // pass, and a pass first deletes what was published).
    assert!(statements.len() <= 2, "one statement per published batch: {statements:?}");

    // Gathering for the usual 50 ms: the rows go while the relay runs, without a pass to wait for.
    let (handoff, handed) = relay::Handoff::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(relay().run(handed, shutdown.clone()));
    for _ in 0..2 {
        hand_one(&handoff).await;
        eventually(Duration::from_secs(10), || async { outbox_len(&pool).await == 0 }).await;
    }
    shutdown.cancel();
    running.await.unwrap();
}
