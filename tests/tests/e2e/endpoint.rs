//! An operator resumes a paused or disabled endpoint, and its next delivery goes at once.

use crm_tests::{eventually, Pipeline, PipelineSpec, Reply};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

const SECRET: &str = "a-long-enough-endpoint-secret";

async fn health(p: &Pipeline, ws: Uuid, token: &str) -> Value {
    p.api.get(&format!("/v1/workspaces/{ws}/crm-webhook/health"), Some(token)).await.expect(200).json()
}

fn resume_path(ws: Uuid) -> String {
    format!("/v1/workspaces/{ws}/crm-webhook/health/resume")
}

#[tokio::test]
async fn a_paused_endpoint_sends_its_next_delivery_at_once_when_resumed() {
    let p = Pipeline::spawn_with(PipelineSpec::pausing_after_three_failures()).await;
    p.receiver.default_reply(Reply::status(503));
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    let viewer = p.api.create_token(ws, "viewer").await;
    for i in 0..3 {
        p.api.interest(ws, &token, &format!("fail{i}@example.com")).await.expect(201);
    }
    p.receiver.wait_for(3, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(10), || async { health(&p, ws, &viewer).await["state"] == "paused" }).await;
    let paused_until = health(&p, ws, &viewer).await["paused_until"].as_str().unwrap().to_owned();
    let until = chrono::DateTime::parse_from_rfc3339(&paused_until).unwrap();
    assert!(until > chrono::Utc::now() + chrono::Duration::seconds(30), "paused for a minute: {paused_until}");

    // The endpoint is fixed; an operator says so rather than waiting out the minute.
    p.receiver.default_reply(Reply::status(200));
    p.api.post(&resume_path(ws), Some(&viewer), &json!({})).await.expect_problem(403, None);
    let (_, stranger) = p.workspace(&p.receiver.url("/other"), SECRET).await;
    p.api.post(&resume_path(ws), Some(&stranger), &json!({})).await.expect_problem(404, None);
    let resumed = p.api.post(&resume_path(ws), Some(&token), &json!({})).await.expect(202).json();
    assert_eq!(resumed, json!({"reenabled": false}));
    let asked = Instant::now();
    p.api.interest(ws, &token, "after-resume@example.com").await.expect(201);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let arrived =
            p.receiver.received().into_iter().find(|r| r.json()["data"]["row"]["email"] == "after-resume@example.com");
        if let Some(r) = arrived {
            let waited = r.at.saturating_duration_since(asked);
            assert!(waited < Duration::from_secs(5), "the next delivery waited {waited:?}, as if still paused");
            break;
        }
        assert!(Instant::now() < deadline, "nothing was sent after the resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually(Duration::from_secs(10), || async { health(&p, ws, &viewer).await["state"] != "paused" }).await;
}

#[tokio::test]
async fn a_webhook_disabled_after_410_is_turned_back_on_by_resume_and_one_switched_off_stays_off() {
    let p = Pipeline::spawn().await;
    p.receiver.script([Reply::status(410)]);
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    p.api.interest(ws, &token, "gone@example.com").await.expect(201);
    eventually(Duration::from_secs(10), || async { health(&p, ws, &token).await["state"] == "disabled" }).await;
    let h = health(&p, ws, &token).await;
    assert!(h["disabled_reason"].as_str().unwrap().contains("410"), "{h}");

    let resumed = p.api.post(&resume_path(ws), Some(&token), &json!({})).await.expect(202).json();
    assert_eq!(resumed, json!({"reenabled": true}));
    let settings = format!("/v1/workspaces/{ws}/settings/crm-webhook");
    let s = p.api.get(&settings, Some(&token)).await.expect(200).json();
    assert_eq!((&s["enabled"], &s["disabled_reason"]), (&json!(true), &Value::Null));
    assert!(health(&p, ws, &token).await["state"] != "disabled");
    p.api.interest(ws, &token, "back@example.com").await.expect(201);
    let got = p.receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].json()["data"]["row"]["email"], "back@example.com", "delivered once turned back on");

    // Switched off by a person: resume leaves it off.
    p.api
        .put(
            &settings,
            Some(&token),
            &json!({"enabled": false, "url": p.receiver.url("/in"), "events": ["crm_row.created"]}),
        )
        .await
        .expect(200);
    let resumed = p.api.post(&resume_path(ws), Some(&token), &json!({})).await.expect(202).json();
    assert_eq!(resumed, json!({"reenabled": false}));
    assert_eq!(p.api.get(&settings, Some(&token)).await.json()["enabled"], false);
}
