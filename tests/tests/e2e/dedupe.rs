//! Dedupe beyond the stream's window: the worker's send-log guard.

use crm_events::{RowChangedEvent, EVENT_SCHEMA_VERSION};
use crm_tests::Pipeline;
use std::time::Duration;

fn metric(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok())).unwrap_or(0.0) as u64
}

async fn publish(p: &Pipeline, event: &RowChangedEvent, msg_id: &str) -> bool {
    let js = p.stream.jetstream().await;
    let subject = crm_events::Subjects::new(p.stream.prefix.clone()).row_changed(event.workspace_id);
    let message =
        async_nats::jetstream::message::PublishMessage::build().payload(event.to_bytes().into()).message_id(msg_id);
    js.send_publish(subject, message).await.unwrap().await.unwrap().duplicate
}

/// A test event of workspace `ws` (no row), as the test route would send it, with the id `id`.
fn test_event(ws: uuid::Uuid, id: uuid::Uuid) -> RowChangedEvent {
    RowChangedEvent { id, ..RowChangedEvent::webhook_test(ws) }
}

#[tokio::test]
async fn an_event_published_twice_is_delivered_once() {
    let p = Pipeline::spawn().await;
    let (ws, _token) = p.workspace(&p.receiver.url("/in"), "a-long-enough-plain-secret").await;
    let event = test_event(ws, uuid::Uuid::now_v7());
    // The same message id twice: the stream stores it once.
    assert!(!publish(&p, &event, &event.id.to_string()).await);
    assert!(publish(&p, &event, &event.id.to_string()).await, "the stream's duplicate window caught it");
    // Two more copies under other message ids (a republish after the window): the worker's guard catches them.
    publish(&p, &event, "copy-1").await;
    publish(&p, &event, "copy-2").await;
    p.receiver.wait_for(1, Duration::from_secs(10)).await;
    let worker = &p.workers[0];
    crm_tests::eventually(Duration::from_secs(10), || async {
        metric(&worker.metrics().await, "webhook_duplicates_suppressed_total")
            + metric(&worker.metrics().await, "webhook_held_back_total{reason=\"leased\"}")
            >= 2
            && p.receiver.count() == 1
            && crm_tests::stream::message_count(&p.stream.jetstream().await, &p.stream.stream).await == 0
    })
    .await;
    assert_eq!(p.receiver.count(), 1);
}

#[tokio::test]
async fn a_message_that_comes_back_after_success_is_acked_not_sent() {
    let p = Pipeline::spawn().await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), "a-long-enough-plain-secret").await;
    p.api.interest(ws, &token, "once@example.com").await.expect(201);
    let got = p.receiver.wait_for(1, Duration::from_secs(10)).await;
    let id = got[0].webhook_id();
    p.wait_status(ws, &token, &id, "succeeded", Duration::from_secs(5)).await;
    // The stream hands the same event to a worker again (as after a lost ack).
    let stored: Vec<u8> = sqlx::query_scalar("SELECT event FROM deliveries WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&p.pool)
        .await
        .unwrap();
    let event = RowChangedEvent::from_slice(&stored).unwrap();
    publish(&p, &event, "redelivered").await;
    let worker = &p.workers[0];
    crm_tests::eventually(Duration::from_secs(10), || async {
        metric(&worker.metrics().await, "webhook_duplicates_suppressed_total") == 1
    })
    .await;
    assert_eq!(p.receiver.count(), 1, "sent again");
    let js = p.stream.jetstream().await;
    assert_eq!(crm_tests::stream::message_count(&js, &p.stream.stream).await, 0, "the copy was acked");
}

#[tokio::test]
async fn an_event_this_build_cannot_read_ends_its_delivery_as_failed_and_blocks_nothing() {
    let p = Pipeline::spawn().await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), "a-long-enough-plain-secret").await;
    // Two open deliveries whose events this worker cannot read: a body that is no event, and an event of a newer
    // schema version. Neither may leave its delivery pending for ever.
    let garbage = uuid::Uuid::now_v7();
    let future = uuid::Uuid::now_v7();
    for id in [garbage, future] {
        sqlx::query(
            "INSERT INTO deliveries (id, workspace_id, event_type, status, event) VALUES ($1, $2, 'crm_row.created', 'pending', '')",
        )
        .bind(id)
        .bind(ws)
        .execute(&p.pool)
        .await
        .unwrap();
    }
    let js = p.stream.jetstream().await;
    let subject = crm_events::Subjects::new(p.stream.prefix.clone()).row_changed(ws);
    let mut newer = serde_json::to_value(test_event(ws, future)).unwrap();
    newer["schema_version"] = serde_json::json!(EVENT_SCHEMA_VERSION + 1);
    for (id, body) in [(garbage, b"{not json".to_vec()), (future, serde_json::to_vec(&newer).unwrap())] {
        let message =
            async_nats::jetstream::message::PublishMessage::build().payload(body.into()).message_id(id.to_string());
        js.send_publish(subject.clone(), message).await.unwrap().await.unwrap();
    }
    for id in [garbage, future] {
        let delivery = p.wait_status(ws, &token, &id.to_string(), "failed", Duration::from_secs(10)).await;
        let error = delivery["last_error"].as_str().unwrap_or_default();
        assert!(error.starts_with("undecodable event"), "{delivery}");
    }
    // The events behind them go out.
    p.api.interest(ws, &token, "after@example.com").await.expect(201);
    p.receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(p.receiver.count(), 1, "neither unreadable event was sent");
}
