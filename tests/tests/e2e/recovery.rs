//! Bulk recovery through the whole pipeline: failed and dead deliveries are sent again with their webhook ids and
//! a fresh retry budget, paced behind live traffic, and shared by crm-api replicas without a second send.

use crm_tests::{eventually, metric, ApiProcess, Pipeline, PipelineSpec, Reply};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

const SECRET: &str = "a-long-enough-recovery-secret";

fn spec(env: &[(&'static str, &str)]) -> PipelineSpec {
    let mut all = vec![("CRM_RECOVERY_INTERVAL_MS", "100".to_owned())];
    all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    PipelineSpec { env: all, ..Default::default() }
}

/// Waits until the workspace has `n` deliveries with `status`.
async fn settled(p: &Pipeline, ws: Uuid, token: &str, status: &str, n: usize) {
    let path = format!("/v1/workspaces/{ws}/crm-webhook/deliveries?status={status}&limit=200");
    eventually(Duration::from_secs(20), || async {
        p.api.get(&path, Some(token)).await.json()["deliveries"].as_array().map(Vec::len) == Some(n)
    })
    .await;
}

async fn start(p: &Pipeline, ws: Uuid, token: &str, body: Value) -> Value {
    let path = format!("/v1/workspaces/{ws}/crm-webhook/recoveries");
    p.api.post(&path, Some(token), &body).await.expect(202).json()
}

async fn recovery(p: &Pipeline, ws: Uuid, token: &str, id: &str) -> Value {
    p.api.get(&format!("/v1/workspaces/{ws}/crm-webhook/recoveries/{id}"), Some(token)).await.expect(200).json()
}

async fn completed(p: &Pipeline, ws: Uuid, token: &str, id: &str) -> Value {
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        last = recovery(p, ws, token, id).await;
        if last["status"] == "completed" {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the recovery did not complete: {last}");
}

fn ten_minutes_ago() -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339()
}

/// The attempt numbers each webhook id arrived with, in order.
fn attempts_by_id(p: &Pipeline) -> HashMap<String, Vec<u32>> {
    let mut by_id: HashMap<String, Vec<u32>> = HashMap::new();
    for r in p.receiver.received() {
        by_id.entry(r.webhook_id()).or_default().push(r.header("x-crm-webhook-attempt").parse().unwrap());
    }
    by_id
}

#[tokio::test]
async fn failed_and_dead_deliveries_are_sent_again_with_their_webhook_ids_and_new_attempt_numbers() {
    let p = Pipeline::spawn_with(spec(&[("CRM_WEBHOOK_MAX_ATTEMPTS", "2"), ("CRM_RECOVERY_BATCH", "2")])).await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    // Three refused outright (failed), two that keep failing (dead after two attempts), one delivered.
    p.receiver.default_reply(Reply::status(400));
    for i in 0..3 {
        p.api.interest(ws, &token, &format!("failed{i}@example.com")).await.expect(201);
    }
    settled(&p, ws, &token, "failed", 3).await;
    p.receiver.default_reply(Reply::status(503));
    for i in 0..2 {
        p.api.interest(ws, &token, &format!("dead{i}@example.com")).await.expect(201);
    }
    settled(&p, ws, &token, "dead", 2).await;
    p.receiver.default_reply(Reply::status(200));
    p.api.interest(ws, &token, "fine@example.com").await.expect(201);
    settled(&p, ws, &token, "succeeded", 1).await;
    let fine = p.api.get(&format!("/v1/workspaces/{ws}/crm-webhook/deliveries?status=succeeded"), Some(&token)).await;
    let fine = fine.json()["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let before = attempts_by_id(&p);
    assert_eq!(before.len(), 6);

    let started = start(&p, ws, &token, json!({"since": ten_minutes_ago()})).await;
    assert_eq!((&started["status"], &started["matched"]), (&json!("running"), &json!(5)));
    let done = completed(&p, ws, &token, started["id"].as_str().unwrap()).await;
    assert_eq!(done["queued"], 5);
    settled(&p, ws, &token, "succeeded", 6).await;

    let after = attempts_by_id(&p);
    assert_eq!(after[&fine], before[&fine], "the delivered one is not matched and not sent again");
    for (id, attempts) in before.iter().filter(|(id, _)| **id != fine) {
        let now = &after[id];
        assert_eq!(now.len(), attempts.len() + 1, "{id} was sent again exactly once: {now:?}");
        assert_eq!(now.last(), attempts.last().map(|n| n + 1).as_ref(), "{id}: the attempt numbers go on");
    }
}

#[tokio::test]
async fn a_recovered_dead_delivery_has_a_whole_retry_budget_again() {
    let p = Pipeline::spawn_with(spec(&[("CRM_WEBHOOK_MAX_ATTEMPTS", "2")])).await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    p.receiver.default_reply(Reply::status(503));
    p.api.interest(ws, &token, "dead@example.com").await.expect(201);
    settled(&p, ws, &token, "dead", 1).await;
    let started = start(&p, ws, &token, json!({"since": ten_minutes_ago(), "statuses": ["dead"]})).await;
    completed(&p, ws, &token, started["id"].as_str().unwrap()).await;
    // Still failing: two more attempts (3 and 4), not one, before it is dead again.
    settled(&p, ws, &token, "dead", 1).await;
    p.receiver.wait_for(4, Duration::from_secs(20)).await;
    let list = p.api.get(&format!("/v1/workspaces/{ws}/crm-webhook/deliveries?status=dead"), Some(&token)).await;
    let id = list.json()["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let delivery = p.wait_status(ws, &token, &id, "dead", Duration::from_secs(20)).await;
    let attempts: Vec<i64> =
        delivery["attempts"].as_array().unwrap().iter().map(|a| a["attempt"].as_i64().unwrap()).collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    let ids: Vec<String> = p.receiver.received().iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids, vec![id; 4], "the same webhook id every time");
}

#[tokio::test]
async fn live_events_are_not_held_up_behind_a_recovery() {
    // One request at a time to an endpoint that takes 100 ms: 30 recovered deliveries queued at once would keep a
    // live event waiting three seconds.
    let p = Pipeline::spawn_with(spec(&[("WORKER_CONCURRENCY", "1"), ("CRM_RECOVERY_BATCH", "2")])).await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    p.receiver.default_reply(Reply::status(400));
    for i in 0..30 {
        p.api.interest(ws, &token, &format!("old{i}@example.com")).await.expect(201);
    }
    settled(&p, ws, &token, "failed", 30).await;
    p.receiver.default_reply(Reply::status(200).delay(Duration::from_millis(100)));
    let started = start(&p, ws, &token, json!({"since": ten_minutes_ago(), "statuses": ["failed"]})).await;
    let id = started["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), || async { recovery(&p, ws, &token, &id).await["queued"].as_i64() >= Some(4) })
        .await;

    let changed = Instant::now();
    let live = p.api.interest(ws, &token, "live@example.com").await.expect(201).json();
    let row_id = live["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let arrived = loop {
        let found = p.receiver.received().into_iter().find(|r| r.json()["data"]["row"]["id"] == row_id.as_str());
        if let Some(r) = found {
            break r.at;
        }
        assert!(Instant::now() < deadline, "the live event did not arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let waited = arrived.saturating_duration_since(changed);
    let progress = recovery(&p, ws, &token, &id).await;
    assert_eq!(progress["status"], "running", "the recovery was still going when the live event arrived");
    assert!(waited < Duration::from_millis(1500), "the live event waited {waited:?} behind the recovery");
    let done = completed(&p, ws, &token, &id).await;
    assert_eq!(done["queued"], 30);
}

#[tokio::test]
async fn two_crm_api_replicas_share_a_recovery_and_send_each_delivery_once() {
    let p = Pipeline::spawn_with(spec(&[("CRM_RECOVERY_BATCH", "3")])).await;
    let second = ApiProcess::start(p.env.clone()).await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    p.receiver.default_reply(Reply::status(400));
    for i in 0..20 {
        p.api.interest(ws, &token, &format!("twice{i}@example.com")).await.expect(201);
    }
    settled(&p, ws, &token, "failed", 20).await;
    p.receiver.default_reply(Reply::status(200));
    let started = start(&p, ws, &token, json!({"since": ten_minutes_ago()})).await;
    let done = completed(&p, ws, &token, started["id"].as_str().unwrap()).await;
    assert_eq!(done["queued"], 20);
    settled(&p, ws, &token, "succeeded", 20).await;
    for (id, attempts) in attempts_by_id(&p) {
        assert_eq!(attempts, [1, 2], "{id} was sent once more, not twice");
    }
    let mut recovered = 0.0;
    for api in [&p.api, &second.api] {
        recovered += metric(&api.get("/metrics", None).await.text, "crm_deliveries_recovered_total");
    }
    assert_eq!(recovered, 20.0);
}
