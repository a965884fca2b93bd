//! Several workers on one consumer; a worker that dies; a worker that is asked to stop.

use crm_tests::{Pipeline, PipelineSpec, Reply};
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test]
async fn two_workers_deliver_every_event_once() {
    let p = Pipeline::spawn_with(PipelineSpec { workers: 2, ..Default::default() }).await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), "a-long-enough-plain-secret").await;
    for i in 0..60 {
        p.api.interest(ws, &token, &format!("w{i}@example.com")).await.expect(201);
    }
    let got = p.receiver.wait_for(60, Duration::from_secs(20)).await;
    let ids: HashSet<String> = got.iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids.len(), 60);
    let js = p.stream.jetstream().await;
    crm_tests::eventually(Duration::from_secs(5), || async {
        crm_tests::stream::message_count(&js, &p.stream.stream).await == 0
    })
    .await;
    assert_eq!(p.receiver.count(), 60, "an event was sent twice");
    let mut served = 0;
    for w in &p.workers {
        let text = w.metrics().await;
        let n = text
            .lines()
            .find_map(|l| l.strip_prefix("webhook_deliveries_total{outcome=\"succeeded\"} "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(n > 0.0, "one worker did nothing");
        served += n as usize;
    }
    assert_eq!(served, 60);
}

#[tokio::test]
async fn a_worker_killed_mid_burst_leaves_its_messages_to_the_other() {
    let mut p = Pipeline::spawn_with(PipelineSpec { workers: 2, ..Default::default() }).await;
    p.receiver.default_reply(Reply::status(200).delay(Duration::from_millis(150)));
    let (ws, token) = p.workspace(&p.receiver.url("/in"), "a-long-enough-plain-secret").await;
    for i in 0..40 {
        p.api.interest(ws, &token, &format!("k{i}@example.com")).await.expect(201);
    }
    p.receiver.wait_for(6, Duration::from_secs(10)).await;
    let victim = p.workers.remove(0);
    victim.kill().await;
    crm_tests::eventually(Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM deliveries WHERE status = 'succeeded'")
            .fetch_one(&p.pool)
            .await
            .unwrap()
            == 40
    })
    .await;
    let ids: HashSet<String> = p.receiver.received().iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids.len(), 40, "every event reached the receiver");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_work_within_the_grace_period() {
    let mut p = Pipeline::spawn().await;
    p.receiver.script([Reply::status(200).delay(Duration::from_millis(800))]);
    let (ws, token) = p.workspace(&p.receiver.url("/in"), "a-long-enough-plain-secret").await;
    p.api.interest(ws, &token, "drain@example.com").await.expect(201);
    let got = p.receiver.wait_for(1, Duration::from_secs(10)).await;
    let worker = p.workers.remove(0);
    worker.stop().await.expect("the worker stops cleanly");
    let delivery = p.delivery(ws, &token, &got[0].webhook_id()).await;
    assert_eq!(delivery["status"], "succeeded", "the in-flight delivery was finished before exit");
    assert_eq!(p.receiver.count(), 1);
}

#[tokio::test]
async fn work_still_in_flight_after_the_grace_period_is_handed_back_uncounted() {
    let mut p = Pipeline::spawn_with(PipelineSpec {
        env: vec![("WORKER_SHUTDOWN_GRACE_MS", "300".into()), ("CRM_WEBHOOK_TIMEOUT_MS", "10000".into())],
        ..Default::default()
    })
    .await;
    p.receiver.script([Reply::status(200).delay(Duration::from_secs(5))]);
    let (ws, token) = p.workspace(&p.receiver.url("/in"), "a-long-enough-plain-secret").await;
    p.api.interest(ws, &token, "handback@example.com").await.expect(201);
    let got = p.receiver.wait_for(1, Duration::from_secs(10)).await;
    let id = got[0].webhook_id();
    let worker = p.workers.remove(0);
    let stopping = std::time::Instant::now();
    worker.stop().await.expect("the worker stops cleanly");
    assert!(stopping.elapsed() < Duration::from_secs(3), "stop waited for the slow request");
    let delivery = p.delivery(ws, &token, &id).await;
    assert_eq!(delivery["attempt_count"], 0, "an abandoned attempt is not counted");

    // The message was handed back at once: a new worker delivers it without waiting for the ack wait.
    p.add_worker().await;
    let got = p.receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].webhook_id(), id);
    assert_eq!(got[1].header("x-crm-webhook-attempt"), "1");
    let delivery = p.wait_status(ws, &token, &id, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(delivery["attempt_count"], 1);
}

#[tokio::test]
async fn a_request_slower_than_the_ack_wait_is_not_redelivered_elsewhere() {
    // Ack wait 1 s, a receiver that takes 2.5 s: only in-progress acks keep JetStream from handing the message to
    // the second worker while the first is still sending.
    let p = Pipeline::spawn_with(PipelineSpec {
        workers: 2,
        env: vec![("WORKER_ACK_WAIT_MS", "1000".into()), ("CRM_WEBHOOK_TIMEOUT_MS", "5000".into())],
        ..Default::default()
    })
    .await;
    p.receiver.default_reply(Reply::status(200).delay(Duration::from_millis(2500)));
    let (ws, token) = p.workspace(&p.receiver.url("/in"), "a-long-enough-plain-secret").await;
    p.api.interest(ws, &token, "slow@example.com").await.expect(201);
    let got = p.receiver.wait_for(1, Duration::from_secs(10)).await;
    let id = got[0].webhook_id();
    let delivery = p.wait_status(ws, &token, &id, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(delivery["attempt_count"], 1);
    // Past two more ack waits: nothing came back.
    let js = p.stream.jetstream().await;
    crm_tests::eventually(Duration::from_secs(5), || async {
        crm_tests::stream::message_count(&js, &p.stream.stream).await == 0
    })
    .await;
    let mut held = 0;
    for w in &p.workers {
        held +=
            w.metrics().await.lines().filter(|l| l.starts_with("webhook_held_back_total{reason=\"leased\"}")).count();
    }
    assert_eq!(held, 0, "the message was redelivered to the other worker while in flight");
    assert_eq!(p.receiver.count(), 1);
}
