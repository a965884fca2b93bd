//! Boots the webhook sink in-process on an ephemeral port and sends it real HTTP requests signed the way the
//! delivery worker signs them.

use std::net::SocketAddr;

use crm_bench::sink::{self, Output, SinkConfig};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use webhook_signing::{Signer, SigningKey};

const NEW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const ID: &str = "019a3c1e-7d2a-7b3c-9f00-0000000000a1";

struct Sink {
    addr: SocketAddr,
    reports: mpsc::UnboundedReceiver<String>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Sink {
    async fn start(secrets: &[&str]) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, reports) = mpsc::unbounded_channel();
        let mut config = SinkConfig::from_secrets(secrets).unwrap();
        config.output = Output::Channel(tx);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sink::serve(listener, config, async move {
            let _ = stopped.await;
        }));
        Sink { addr, reports, stop: Some(stop), task }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/crm", self.addr)
    }

    async fn next_report(&mut self) -> String {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.reports.recv())
            .await
            .expect("no report within 5 s")
            .expect("sink stopped")
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(std::time::Duration::from_secs(5), self.task)
            .await
            .expect("sink did not shut down")
            .unwrap()
            .unwrap();
    }
}

fn payload() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": ID,
        "type": "crm_row.updated",
        "api_version": "2026-11-01",
        "occurred_at": "2026-11-01T09:30:00.000000Z",
        "workspace_id": "019a3c1e-0000-7000-8000-0000000000ff",
        "data": {
            "trigger": "crm_edit",
            "row": {"id": "019a3c1e-0000-7000-8000-000000000001", "version": 7, "pipeline_stage": "qualified"},
            "changed_fields": ["pipeline_stage"],
            "previous": {"pipeline_stage": "new"}
        }
    }))
    .unwrap()
}

/// A request as the worker sends it: both signature schemes with the keys of `secrets` (new first).
fn request(client: &reqwest::Client, url: &str, secrets: &[&str], body: Vec<u8>) -> reqwest::RequestBuilder {
    let keys = secrets.iter().map(|s| SigningKey::from_secret(s).unwrap()).collect();
    let signer = Signer::new(keys).unwrap();
    let now = chrono::Utc::now().timestamp();
    let headers = signer.sign(ID, now, &body);
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-crm-webhook-id", ID)
        .header("x-crm-webhook-event", "crm_row.updated")
        .header("x-crm-webhook-timestamp", now.to_string())
        .header("x-crm-webhook-signature", headers.crm_signature)
        .header("x-crm-webhook-attempt", "1")
        .header("webhook-id", ID)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", headers.standard_signature)
        .body(body)
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_correctly_signed_delivery_is_verified_and_reported() {
    let mut sink = Sink::start(&[NEW_SECRET]).await;
    let client = reqwest::Client::new();
    let (status, body) = answer(request(&client, &sink.url(), &[NEW_SECRET], payload()).send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!({"ok": true})));

    let report = sink.next_report().await;
    let line = report.lines().next().unwrap();
    let (_, rest) = line.split_once(' ').unwrap();
    assert_eq!(
        rest,
        format!(
            "verified id={ID} event=crm_row.updated attempt=1 workspace=019a3c1e-0000-7000-8000-0000000000ff \
             row=019a3c1e-0000-7000-8000-000000000001 version=7 changed=pipeline_stage"
        )
    );
    let stamp = line.split(' ').next().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{stamp}");
    assert!(report.contains("    \"pipeline_stage\": \"qualified\""), "{report}");
    assert!(!report.contains(NEW_SECRET.trim_start_matches("whsec_")));
    sink.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_is_rejected() {
    let mut sink = Sink::start(&[NEW_SECRET]).await;
    let client = reqwest::Client::new();
    let (status, body) = answer(request(&client, &sink.url(), &[OLD_SECRET], payload()).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["ok"], false);
    assert!(body["error"].as_str().unwrap().contains("no matching signature"), "{body}");
    assert!(sink.next_report().await.contains(" REJECTED("));
    sink.stop().await;
}

#[tokio::test]
async fn a_tampered_body_is_rejected() {
    let mut sink = Sink::start(&[NEW_SECRET]).await;
    let client = reqwest::Client::new();
    let signed = request(&client, &sink.url(), &[NEW_SECRET], payload());
    let tampered = String::from_utf8(payload()).unwrap().replace("qualified", "won");
    let (status, body) = answer(signed.body(tampered).send().await.unwrap()).await;
    assert_eq!(status, 401);
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("crm signature") && error.contains("standard webhooks signature"), "{error}");
    assert!(sink.next_report().await.contains(" REJECTED("));
    sink.stop().await;
}

#[tokio::test]
async fn missing_standard_webhooks_headers_are_rejected() {
    let mut sink = Sink::start(&[NEW_SECRET]).await;
    let client = reqwest::Client::new();
    // Only the crm scheme, correctly signed: not enough.
    let body = payload();
    let now = chrono::Utc::now().timestamp();
    let signer = Signer::new(vec![SigningKey::from_secret(NEW_SECRET).unwrap()]).unwrap();
    let response = client
        .post(sink.url())
        .header("content-type", "application/json")
        .header("x-crm-webhook-id", ID)
        .header("x-crm-webhook-event", "crm_row.updated")
        .header("x-crm-webhook-timestamp", now.to_string())
        .header("x-crm-webhook-signature", signer.sign(ID, now, &body).crm_signature)
        .header("x-crm-webhook-attempt", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, answer) = answer(response).await;
    assert_eq!(status, 401);
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("missing or empty header webhook-id"), "{error}");
    assert!(!error.contains("crm signature"), "the crm scheme itself verified: {error}");
    let report = sink.next_report().await;
    assert!(report
        .contains(&format!(" REJECTED(standard webhooks signature: missing or empty header webhook-id) id={ID} ")));
    sink.stop().await;
}

#[tokio::test]
async fn during_a_rotation_the_old_secret_alone_still_verifies() {
    let mut sink = Sink::start(&[OLD_SECRET]).await;
    let client = reqwest::Client::new();
    let (status, body) =
        answer(request(&client, &sink.url(), &[NEW_SECRET, OLD_SECRET], payload()).send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!({"ok": true})));
    assert!(sink.next_report().await.contains(" verified "));
    sink.stop().await;
}

#[tokio::test]
async fn a_sink_holding_both_secrets_accepts_either() {
    let mut sink = Sink::start(&[NEW_SECRET, OLD_SECRET]).await;
    let client = reqwest::Client::new();
    for secret in [NEW_SECRET, OLD_SECRET] {
        let response = request(&client, &sink.url(), &[secret], payload()).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(sink.next_report().await.contains(" verified "));
    }
    sink.stop().await;
}

#[tokio::test]
async fn a_body_id_other_than_the_webhook_id_is_rejected() {
    let mut sink = Sink::start(&[NEW_SECRET]).await;
    let client = reqwest::Client::new();
    let body = String::from_utf8(payload()).unwrap().replace(ID, "019a3c1e-7d2a-7b3c-9f00-0000000000b2");
    let (status, answer) =
        answer(request(&client, &sink.url(), &[NEW_SECRET], body.into_bytes()).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"], "body id does not equal webhook-id");
    sink.next_report().await;
    sink.stop().await;
}

#[tokio::test]
async fn the_configured_status_is_answered_and_other_methods_are_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut reports) = mpsc::unbounded_channel();
    let mut config = SinkConfig::from_secrets(&[NEW_SECRET]).unwrap();
    config.output = Output::Channel(tx);
    config.status = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    config.quiet = true;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(sink::serve(listener, config, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/");

    let (status, body) = answer(request(&client, &url, &[NEW_SECRET], payload()).send().await.unwrap()).await;
    assert_eq!((status, body), (503, json!({"ok": true})));
    let report = reports.recv().await.unwrap();
    assert_eq!(report.lines().count(), 1, "quiet prints only the summary: {report}");

    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
