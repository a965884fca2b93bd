//! One workspace's broken endpoint does not hold up the others, and is not hammered.

use crm_tests::{metric, Pipeline, PipelineSpec, Receiver, Reply};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_hanging_endpoint_does_not_delay_other_workspaces() {
    let p = Pipeline::spawn_with(PipelineSpec {
        env: vec![("CRM_WEBHOOK_TIMEOUT_MS", "5000".into()), ("WORKER_CONCURRENCY", "16".into())],
        ..Default::default()
    })
    .await;
    let hanging = Receiver::start().await;
    hanging.default_reply(Reply::status(200).delay(Duration::from_secs(60)));
    let (ws_a, token_a) = p.workspace(&hanging.url("/a"), "secret-of-workspace-a").await;
    let (ws_b, token_b) = p.workspace(&p.receiver.url("/b"), "secret-of-workspace-b").await;
    for i in 0..40 {
        p.api.interest(ws_a, &token_a, &format!("a{i}@example.com")).await.expect(201);
    }
    hanging.wait_for(4, Duration::from_secs(10)).await;
    for i in 0..10 {
        let changed = Instant::now();
        p.api.interest(ws_b, &token_b, &format!("b{i}@example.com")).await.expect(201);
        let got = p.receiver.wait_for(i + 1, Duration::from_secs(5)).await;
        let latency = got[i].at.saturating_duration_since(changed);
        assert!(latency <= Duration::from_secs(1), "workspace B waited {latency:?} behind workspace A");
    }
    assert!(hanging.count() <= 8, "workspace A held more than its share of slots: {}", hanging.count());
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_paused_not_hammered() {
    let p = Pipeline::spawn_with(PipelineSpec::pausing_after_three_failures()).await;
    p.receiver.default_reply(Reply::status(503));
    let (ws, token) = p.workspace(&p.receiver.url("/in"), "a-long-enough-plain-secret").await;
    for i in 0..5 {
        p.api.interest(ws, &token, &format!("p{i}@example.com")).await.expect(201);
    }
    // Paused after three failures: the other two messages, and the three retries as they come back, wait in the
    // worker (queued for the endpoint, or handed back with the pause as their delay) instead of being sent.
    let worker = &p.workers[0];
    let queued = format!("webhook_endpoint_queued{{workspace_id=\"{ws}\"}}");
    crm_tests::eventually(Duration::from_secs(15), || async {
        let metrics = worker.metrics().await;
        metric(&metrics, "webhook_endpoints_paused") == 1.0
            && metric(&metrics, &queued) + metric(&metrics, "webhook_held_back_total{reason=\"backlog\"}") >= 5.0
    })
    .await;
    assert_eq!(p.receiver.count(), 3, "requests went out while the endpoint was paused");
    // crm-api shows it paused, until when, from what the worker reports.
    let health = format!("/v1/workspaces/{ws}/crm-webhook/health");
    crm_tests::eventually(Duration::from_secs(10), || async {
        let h = p.api.get(&health, Some(&token)).await.expect(200).json();
        h["state"] == "paused" && h["paused_until"].is_string() && h["workers"] == 1
    })
    .await;
    let list =
        p.api.get(&format!("/v1/workspaces/{ws}/crm-webhook/deliveries?status=retrying"), Some(&token)).await.json();
    let attempts: i64 = list["deliveries"].as_array().unwrap().iter().map(|d| d["attempts"].as_i64().unwrap()).sum();
    assert_eq!(attempts, 3, "hand-backs while paused are not attempts");
}
