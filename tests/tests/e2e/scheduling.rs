//! The scheduler in a real worker: one busy workspace gets the whole worker, two share it, an endpoint's limit
//! follows how it answers, and a rate cap is paced to without hand-backs or spent retries.

use crm_tests::{metric, Pipeline, PipelineSpec, Receiver, Reply};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

fn spec(workers: usize, env: &[(&'static str, &str)]) -> PipelineSpec {
    PipelineSpec { workers, env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(), ..Default::default() }
}

async fn interests(p: &Pipeline, ws: Uuid, token: &str, prefix: &str, n: usize) {
    for i in 0..n {
        p.api.interest(ws, token, &format!("{prefix}{i}@example.com")).await.expect(201);
    }
}

/// Waits until the test's stream holds `n` messages (every event published, none consumed yet).
async fn stream_holds(p: &Pipeline, n: u64) {
    let js = p.stream.jetstream().await;
    crm_tests::eventually(Duration::from_secs(20), || async {
        crm_tests::stream::message_count(&js, &p.stream.stream).await >= n
    })
    .await;
}

#[tokio::test]
async fn one_workspace_alone_uses_the_whole_worker() {
    // A fixed cap per workspace would leave most of the worker idle while this one workspace has work waiting.
    let mut p = Pipeline::spawn_with(spec(0, &[("WORKER_CONCURRENCY", "16")])).await;
    p.receiver.default_reply(Reply::status(200).delay(Duration::from_millis(200)));
    let (ws, token) = p.workspace(&p.receiver.url("/in"), "secret-of-the-busy-one").await;
    interests(&p, ws, &token, "busy", 96).await;
    stream_holds(&p, 96).await;
    p.add_worker().await;
    p.receiver.wait_for(96, Duration::from_secs(30)).await;
    assert_eq!(p.receiver.max_in_flight(), 16, "the one busy workspace should have had every slot");
}

#[tokio::test]
async fn two_busy_workspaces_share_the_worker_evenly() {
    let mut p = Pipeline::spawn_with(spec(0, &[("WORKER_CONCURRENCY", "8")])).await;
    p.receiver.default_reply(Reply::status(200).delay(Duration::from_millis(50)));
    let (a, token_a) = p.workspace(&p.receiver.url("/a"), "secret-of-workspace-a").await;
    let (b, token_b) = p.workspace(&p.receiver.url("/b"), "secret-of-workspace-b").await;
    // All of A's events are in the stream before B's: in stream order B would wait for A to finish.
    interests(&p, a, &token_a, "a", 60).await;
    interests(&p, b, &token_b, "b", 60).await;
    stream_holds(&p, 120).await;
    p.add_worker().await;
    let first = p.receiver.wait_for(60, Duration::from_secs(30)).await;
    let to_a = first[..60].iter().filter(|r| r.path == "/a").count();
    assert!((24..=36).contains(&to_a), "A got {to_a} of the first 60 deliveries; an even share is 30");
}

#[tokio::test]
async fn the_limit_shrinks_for_a_slow_endpoint_and_grows_for_a_fast_one() {
    let mut p = Pipeline::spawn_with(spec(
        0,
        &[("WORKER_CONCURRENCY", "32"), ("CRM_WEBHOOK_TIMEOUT_MS", "300"), ("CRM_ENDPOINT_PAUSE_AFTER", "1000")],
    ))
    .await;
    let slow = Receiver::start().await;
    slow.default_reply(Reply::status(200).delay(Duration::from_secs(5)));
    let (ws_slow, token_slow) = p.workspace(&slow.url("/slow"), "secret-of-the-slow-one").await;
    let (ws_fast, token_fast) = p.workspace(&p.receiver.url("/fast"), "secret-of-the-fast-one").await;
    p.receiver.default_reply(Reply::status(200).delay(Duration::from_millis(20)));
    interests(&p, ws_slow, &token_slow, "slow", 20).await;
    interests(&p, ws_fast, &token_fast, "fast", 150).await;
    // Both have work waiting when the worker starts, so each endpoint's limit is put to use.
    stream_holds(&p, 170).await;
    p.add_worker().await;
    let worker = &p.workers[0];
    let limit = |ws: Uuid| format!("webhook_endpoint_concurrency_limit{{workspace_id=\"{ws}\"}}");
    crm_tests::eventually(Duration::from_secs(30), || async {
        let metrics = worker.metrics().await;
        metric(&metrics, &limit(ws_slow)) == 1.0 && metric(&metrics, &limit(ws_fast)) >= 8.0
    })
    .await;
    // crm-api reads the same limits back for the console.
    crm_tests::eventually(Duration::from_secs(10), || async {
        let health = |ws: Uuid, token: String| {
            let api = p.api.clone();
            async move { api.get(&format!("/v1/workspaces/{ws}/crm-webhook/health"), Some(&token)).await.json() }
        };
        let (slow, fast) = (health(ws_slow, token_slow.clone()).await, health(ws_fast, token_fast.clone()).await);
        slow["concurrency_limit"] == 1 && fast["concurrency_limit"].as_i64().is_some_and(|l| l >= 8)
    })
    .await;
}

#[tokio::test]
async fn a_rate_cap_is_paced_to_without_handing_back_or_retrying() {
    let p = Pipeline::spawn_with(spec(1, &[("WORKER_CONCURRENCY", "32")])).await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), "secret-of-the-capped-one").await;
    let mut settings = json!({"enabled": true, "url": p.receiver.url("/in"), "events": ["crm_row.created"],
                              "max_per_second": 10});
    settings["secret"] = json!("secret-of-the-capped-one");
    p.api.put(&format!("/v1/workspaces/{ws}/settings/crm-webhook"), Some(&token), &settings).await.expect(200);
    interests(&p, ws, &token, "capped", 30).await;
    let got = p.receiver.wait_for(30, Duration::from_secs(20)).await;
    let start = got[0].at;
    for (i, r) in got.iter().enumerate().skip(1) {
        // From a cold start: one at once, then one every 100 ms.
        let earliest = Duration::from_millis(100 * i as u64).saturating_sub(Duration::from_millis(60));
        let at = r.at.duration_since(start);
        assert!(at >= earliest, "delivery {i} went out {at:?} after the first; the cap allows it at {earliest:?}");
    }
    let metrics = p.workers[0].metrics().await;
    assert_eq!(metric(&metrics, "webhook_held_back_total{reason=\"backlog\"}"), 0.0, "nothing was handed back");
    // The receiver has seen all 30; the worker records the last attempts just after their answers.
    let path = format!("/v1/workspaces/{ws}/crm-webhook/deliveries?limit=50");
    crm_tests::eventually(Duration::from_secs(10), || async {
        let list = p.api.get(&path, Some(&token)).await.json();
        list["deliveries"].as_array().unwrap().iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    let list = p.api.get(&path, Some(&token)).await.json();
    for d in list["deliveries"].as_array().unwrap() {
        assert_eq!(d["attempts"], 1, "pacing spends no retry: {d}");
    }
}

#[tokio::test]
async fn workers_share_a_rate_cap_between_them() {
    let mut p = Pipeline::spawn_with(spec(1, &[("WORKER_CONCURRENCY", "32")])).await;
    p.add_worker().await;
    // Each worker learns of the other from their heartbeats.
    for worker in &p.workers {
        crm_tests::eventually(Duration::from_secs(10), || async {
            metric(&worker.metrics().await, "webhook_workers_alive") == 2.0
        })
        .await;
    }
    let (ws, token) = p.workspace(&p.receiver.url("/in"), "secret-of-the-shared-one").await;
    let settings = json!({"enabled": true, "url": p.receiver.url("/in"), "events": ["crm_row.created"],
                          "max_per_second": 10, "secret": "secret-of-the-shared-one"});
    p.api.put(&format!("/v1/workspaces/{ws}/settings/crm-webhook"), Some(&token), &settings).await.expect(200);
    interests(&p, ws, &token, "shared", 30).await;
    let got = p.receiver.wait_for(30, Duration::from_secs(20)).await;
    let span = got[29].at.duration_since(got[0].at);
    // Two workers at 5 a second each: 30 deliveries take about three seconds, not one and a half.
    assert!(span >= Duration::from_millis(2500), "30 deliveries in {span:?}: the workers did not share the cap");
}
