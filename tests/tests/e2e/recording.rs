//! A webhook the receiver accepted is sent once, whatever happens to its record in the delivery log.
//!
//! Whatever bytes a receiver answers with, the attempt goes into the log: an answer that is not text (a NUL,
//! invalid UTF-8, a Latin-1 error page) used to make the log refuse the attempt, and the worker sent the webhook
//! again every lease, for ever. And while the log cannot be written, the worker keeps trying to record the
//! accepted attempt instead of handing the message back to be sent again.

use crm_tests::{Pipeline, PipelineSpec, Reply};
use std::time::Duration;
use uuid::Uuid;

const SECRET: &str = "a-long-enough-plain-secret";

/// Whether the worker's consumer has nothing left to deliver or waiting for an answer: every message, the first
/// one included, has been acknowledged for good rather than handed back for another send.
async fn consumer_settled(js: &async_nats::jetstream::Context, stream: &str) -> bool {
    let Ok(stream) = js.get_stream(stream).await else { return false };
    let consumer: Result<async_nats::jetstream::consumer::PullConsumer, _> =
        stream.get_consumer(crm_events::CONSUMER_NAME).await;
    let Ok(mut consumer) = consumer else { return false };
    consumer.info().await.is_ok_and(|info| info.num_ack_pending == 0 && info.num_pending == 0)
}

/// A later event is delivered after the accepted webhook `first`, and once it is through, every message has been
/// acknowledged: `first` was not handed back to be sent again, and each webhook arrived exactly once.
async fn nothing_sent_again(p: &Pipeline, ws: Uuid, token: &str, first: &str) {
    p.api.interest(ws, token, "after@example.com").await.expect(201);
    let got = p.receiver.wait_for(2, Duration::from_secs(10)).await;
    let second = got[1].webhook_id();
    assert_ne!(second, first, "the accepted webhook was sent again");
    p.wait_status(ws, token, &second, "succeeded", Duration::from_secs(10)).await;
    let js = p.stream.jetstream().await;
    crm_tests::eventually(Duration::from_secs(10), || consumer_settled(&js, &p.stream.stream)).await;
    let ids: Vec<String> = p.receiver.received().iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids, [first.to_owned(), second], "each webhook arrives exactly once");
    let after = p.delivery(ws, token, first).await;
    assert_eq!((after["status"].as_str(), after["attempt_count"].as_i64()), (Some("succeeded"), Some(1)), "{after}");
}

/// The receiver accepts the first webhook with `body`; the attempt is recorded with `expected_excerpt`, and the
/// webhook is not sent again.
async fn accepted_once_with(body: &[u8], expected_excerpt: &str) {
    let p = Pipeline::spawn().await;
    p.receiver.script([Reply::status(200).raw_body(body)]);
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    p.api.interest(ws, &token, "bytes@example.com").await.expect(201);
    let first = p.receiver.wait_for(1, Duration::from_secs(10)).await[0].webhook_id();

    let delivery = p.wait_status(ws, &token, &first, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(delivery["attempt_count"], 1, "{delivery}");
    let attempts = delivery["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{delivery}");
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(attempts[0]["response_excerpt"], expected_excerpt);
    let octets: i32 = sqlx::query_scalar(
        "SELECT octet_length(response_excerpt) FROM delivery_attempts WHERE delivery_id = $1::uuid AND attempt = 1",
    )
    .bind(&first)
    .fetch_one(&p.pool)
    .await
    .expect("the attempt row");
    assert!(octets <= 1024, "{octets} bytes");
    nothing_sent_again(&p, ws, &token, &first).await;
}

#[tokio::test]
async fn an_answer_with_a_nul_byte_is_recorded_once() {
    accepted_once_with(b"ok\0", "ok\u{FFFD}").await;
}

#[tokio::test]
async fn an_answer_of_invalid_utf8_is_recorded_once_within_1_kib() {
    // 1 KiB of 0xFF decodes to 1024 × U+FFFD, 3 KiB of text: the excerpt keeps the 341 that fit in 1 KiB.
    accepted_once_with(&[0xff; 1024], &"\u{FFFD}".repeat(341)).await;
}

#[tokio::test]
async fn a_latin1_error_page_is_recorded_once() {
    // 40 × 27 bytes of Latin-1; each "é" (0xE9) decodes to a 3-byte U+FFFD, so the first KiB of the body is 1073
    // bytes of text. The excerpt keeps 35 sentences (1015 bytes) and 9 bytes of the next.
    let page = b"Erreur: donn\xe9es invalides. ".repeat(40);
    let expected = format!("{}Erreur: d", "Erreur: donn\u{FFFD}es invalides. ".repeat(35));
    assert_eq!(expected.len(), 1024);
    accepted_once_with(&page, &expected).await;
}

/// Until the trigger is dropped, every attempt write fails the way a lost connection does (SQLSTATE 08006, so not
/// a refusal of the record itself), and counts itself in a sequence, which no rollback undoes.
async fn fail_attempt_writes(p: &Pipeline) {
    sqlx::raw_sql(
        "CREATE SEQUENCE attempt_write_failures;
         CREATE FUNCTION fail_attempt_write() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM nextval('attempt_write_failures');
             RAISE EXCEPTION 'the delivery log is away' USING ERRCODE = '08006';
         END $$;
         CREATE TRIGGER fail_attempt_write BEFORE INSERT ON delivery_attempts
             FOR EACH ROW EXECUTE FUNCTION fail_attempt_write();",
    )
    .execute(&p.pool)
    .await
    .expect("the failing trigger");
}

/// How many attempt writes have failed so far.
async fn failed_attempt_writes(p: &Pipeline) -> i64 {
    sqlx::query_scalar("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM attempt_write_failures")
        .fetch_one(&p.pool)
        .await
        .expect("the failure count")
}

async fn allow_attempt_writes(p: &Pipeline) {
    sqlx::query("DROP TRIGGER fail_attempt_write ON delivery_attempts").execute(&p.pool).await.expect("drop trigger");
}

#[tokio::test]
async fn an_accepted_webhook_whose_record_fails_is_recorded_later_not_sent_again() {
    let p = Pipeline::spawn().await;
    fail_attempt_writes(&p).await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    p.api.interest(ws, &token, "outage@example.com").await.expect(201);
    let first = p.receiver.wait_for(1, Duration::from_secs(10)).await[0].webhook_id();

    // Six failed writes take the worker's backoff past the ack wait (3 s): the message is kept alive meanwhile, and
    // the webhook is not sent again (a worker that hands the message back sends it again within a lease, 3.5 s).
    crm_tests::eventually(Duration::from_secs(15), || async {
        failed_attempt_writes(&p).await >= 6 || p.receiver.count() > 1
    })
    .await;
    assert_eq!(p.receiver.count(), 1, "sent again while its record was failing");
    allow_attempt_writes(&p).await;

    let delivery = p.wait_status(ws, &token, &first, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(delivery["attempts"][0]["status_code"], 200, "{delivery}");
    nothing_sent_again(&p, ws, &token, &first).await;
}

#[tokio::test]
async fn a_worker_stopping_with_an_accepted_webhook_unrecorded_acknowledges_it() {
    let mut p = Pipeline::spawn_with(PipelineSpec {
        env: vec![("WORKER_SHUTDOWN_GRACE_MS", "1000".into())],
        ..Default::default()
    })
    .await;
    fail_attempt_writes(&p).await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    p.api.interest(ws, &token, "stopping@example.com").await.expect(201);
    let first = p.receiver.wait_for(1, Duration::from_secs(10)).await[0].webhook_id();
    crm_tests::eventually(Duration::from_secs(10), || async { failed_attempt_writes(&p).await >= 2 }).await;

    // The grace period runs out while the worker is still trying to record: it acknowledges the message (the
    // receiver has the webhook) rather than handing it back, so nothing is left for another worker to send.
    let worker = p.workers.pop().expect("the worker");
    worker.stop().await.expect("the worker stops");
    let js = p.stream.jetstream().await;
    crm_tests::eventually(Duration::from_secs(10), || consumer_settled(&js, &p.stream.stream)).await;

    // Another worker, with the log writable again, delivers what comes next and nothing else.
    allow_attempt_writes(&p).await;
    p.add_worker().await;
    p.api.interest(ws, &token, "after-stop@example.com").await.expect(201);
    let got = p.receiver.wait_for(2, Duration::from_secs(10)).await;
    let second = got[1].webhook_id();
    p.wait_status(ws, &token, &second, "succeeded", Duration::from_secs(10)).await;
    crm_tests::eventually(Duration::from_secs(10), || consumer_settled(&js, &p.stream.stream)).await;
    let ids: Vec<String> = p.receiver.received().iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids, [first.clone(), second], "each webhook arrives exactly once");
    // The price: the log lags behind the receiver for this one; it still shows the delivery as unfinished.
    assert_eq!(p.delivery(ws, &token, &first).await["status"], "pending");
}
