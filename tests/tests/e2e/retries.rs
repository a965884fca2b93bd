//! The retry matrix end to end: what is retried, when, and what stops.

use crm_tests::{Pipeline, PipelineSpec, Reply};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "a-long-enough-plain-secret";

async fn one_delivery(p: &Pipeline) -> (uuid::Uuid, String, String) {
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    let row = p.api.interest(ws, &token, "retry@example.com").await.expect(201).json();
    let _ = row;
    let first = p.receiver.wait_for(1, Duration::from_secs(10)).await;
    (ws, token, first[0].webhook_id())
}

#[tokio::test]
async fn five_hundreds_then_success_is_delivered_on_attempt_three() {
    let p = Pipeline::spawn().await;
    p.receiver.script([Reply::status(500).body("oops"), Reply::status(500)]);
    let (ws, token, id) = one_delivery(&p).await;
    let got = p.receiver.wait_for(3, Duration::from_secs(10)).await;
    assert!(got.iter().all(|r| r.webhook_id() == id), "the same webhook id on every attempt");
    let attempts: Vec<&str> = got.iter().map(|r| r.header("x-crm-webhook-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    assert_eq!(got[0].body, got[2].body, "every attempt sends the same bytes");
    let delivery = p.wait_status(ws, &token, &id, "succeeded", Duration::from_secs(5)).await;
    let codes: Vec<i64> =
        delivery["attempts"].as_array().unwrap().iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [500, 500, 200]);
    assert_eq!(delivery["attempts"][0]["response_excerpt"], "oops");
    assert_eq!(delivery["attempt_count"], 3);
}

#[tokio::test]
async fn a_400_fails_after_one_attempt() {
    let p = Pipeline::spawn().await;
    p.receiver.default_reply(Reply::status(400).body("bad payload"));
    let (ws, token, id) = one_delivery(&p).await;
    let delivery = p.wait_status(ws, &token, &id, "failed", Duration::from_secs(5)).await;
    assert_eq!(delivery["attempt_count"], 1);
    assert_eq!(delivery["last_status_code"], 400);
    assert!(delivery["next_attempt_at"].is_null());
    assert_eq!(p.receiver.count(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let p = Pipeline::spawn().await;
    p.receiver.script([Reply::status(429).header("retry-after", "2")]);
    let (ws, token, id) = one_delivery(&p).await;
    let got = p.receiver.wait_for(2, Duration::from_secs(10)).await;
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}, sooner than Retry-After");
    let delivery = p.wait_status(ws, &token, &id, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(delivery["attempts"][0]["status_code"], 429);
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let p = Pipeline::spawn().await;
    p.receiver.script([Reply::status(200).delay(Duration::from_secs(3))]);
    let (ws, token, id) = one_delivery(&p).await;
    let delivery = p.wait_status(ws, &token, &id, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(delivery["attempt_count"], 2);
    assert!(delivery["attempts"][0]["status_code"].is_null());
    assert!(delivery["attempts"][0]["error"].as_str().unwrap().contains("timeout"), "{delivery}");
}

#[tokio::test]
async fn a_redirect_fails_and_is_not_followed() {
    let p = Pipeline::spawn().await;
    p.receiver.default_reply(Reply::status(302).header("location", "/elsewhere"));
    let (ws, token, id) = one_delivery(&p).await;
    let delivery = p.wait_status(ws, &token, &id, "failed", Duration::from_secs(5)).await;
    assert_eq!(delivery["last_status_code"], 302);
    assert!(delivery["last_error"].as_str().unwrap().contains("redirect"));
    assert!(p.receiver.received().iter().all(|r| r.path == "/in"), "the redirect was followed");
    assert_eq!(p.receiver.count(), 1);
}

#[tokio::test]
async fn attempts_run_out_and_the_delivery_is_dead() {
    let p = Pipeline::spawn_with(PipelineSpec {
        env: vec![("CRM_WEBHOOK_MAX_ATTEMPTS", "3".into()), ("CRM_ENDPOINT_PAUSE_AFTER", "10".into())],
        ..Default::default()
    })
    .await;
    p.receiver.default_reply(Reply::status(503));
    let (ws, token, id) = one_delivery(&p).await;
    let delivery = p.wait_status(ws, &token, &id, "dead", Duration::from_secs(10)).await;
    assert_eq!(delivery["attempt_count"], 3);
    assert_eq!(p.receiver.count(), 3);

    // Redelivered, it gets a fresh budget: one more failure is a retry, not instant death.
    p.receiver.script([Reply::status(503), Reply::status(200)]);
    p.api
        .post(
            &format!("/v1/workspaces/{ws}/crm-webhook/deliveries/{id}/redeliver"),
            Some(&token),
            &serde_json::json!({}),
        )
        .await
        .expect(202);
    let delivery = p.wait_status(ws, &token, &id, "succeeded", Duration::from_secs(10)).await;
    let numbers: Vec<i64> =
        delivery["attempts"].as_array().unwrap().iter().map(|a| a["attempt"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn gone_disables_the_webhook_and_says_so() {
    let p = Pipeline::spawn().await;
    p.receiver.default_reply(Reply::status(410));
    let (ws, token, id) = one_delivery(&p).await;
    p.wait_status(ws, &token, &id, "failed", Duration::from_secs(5)).await;
    let settings =
        p.api.get(&format!("/v1/workspaces/{ws}/settings/crm-webhook"), Some(&token)).await.expect(200).json();
    assert_eq!(settings["enabled"], false);
    assert!(settings["disabled_reason"].as_str().unwrap().contains("410"), "{settings}");
    // Later changes are skipped, not sent.
    let second = p.api.interest(ws, &token, "after-gone@example.com").await.expect(201).json();
    let list = format!("/v1/workspaces/{ws}/crm-webhook/deliveries?status=skipped");
    crm_tests::eventually(Duration::from_secs(10), || async {
        p.api.get(&list, Some(&token)).await.json()["deliveries"][0]["row_id"] == second["id"]
    })
    .await;
    assert_eq!(p.receiver.count(), 1);
}

#[tokio::test]
async fn after_gone_the_endpoints_queued_deliveries_are_skipped_not_sent() {
    // One delivery at a time: the others wait in the worker's queue while the first gets its 410.
    let p = Pipeline::spawn_with(PipelineSpec { env: vec![("WORKER_CONCURRENCY", "1".into())], ..Default::default() })
        .await;
    p.receiver.default_reply(Reply::status(410).delay(Duration::from_millis(300)));
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    for i in 0..4 {
        p.api.interest(ws, &token, &format!("queued{i}@example.com")).await.expect(201);
    }
    let skipped = format!("/v1/workspaces/{ws}/crm-webhook/deliveries?status=skipped");
    crm_tests::eventually(Duration::from_secs(10), || async {
        p.api.get(&skipped, Some(&token)).await.json()["deliveries"].as_array().map_or(0, Vec::len) == 3
    })
    .await;
    assert_eq!(p.receiver.count(), 1, "the endpoint that answered 410 got nothing more");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_blocked_at_connect_time() {
    // The worker may not reach 127.0.0.0/8; the name passed the write-time check (it is a public-looking name),
    // and resolves to 127.0.0.1 at send time (DNS rebinding).
    let lookup = delivery_worker::sender::StaticLookup::new(
        [("crm.rebind.example".to_owned(), vec!["127.0.0.1".parse().unwrap()])].into_iter().collect(),
    );
    let p = Pipeline::spawn_with(PipelineSpec {
        env: vec![("CRM_EGRESS_ALLOW_CIDRS", String::new())],
        lookup: Some(Arc::new(lookup)),
        ..Default::default()
    })
    .await;
    let url = format!("http://crm.rebind.example:{}/in", p.receiver.port);
    let (ws, token) = p.workspace(&url, SECRET).await;
    let row = p.api.interest(ws, &token, "rebind@example.com").await.expect(201).json();
    let list = format!("/v1/workspaces/{ws}/crm-webhook/deliveries");
    crm_tests::eventually(Duration::from_secs(10), || async {
        p.api.get(&list, Some(&token)).await.json()["deliveries"][0]["status"] == "failed"
    })
    .await;
    let delivery = p.api.get(&list, Some(&token)).await.json()["deliveries"][0].clone();
    assert_eq!(delivery["row_id"], row["id"]);
    let reason = delivery["last_error"].as_str().unwrap();
    assert!(reason.contains("egress") && reason.contains("loopback"), "{reason}");
    assert_eq!(delivery["attempts"], 1);
    assert_eq!(p.receiver.connections(), 0, "a connection was made to a blocked address");
}
