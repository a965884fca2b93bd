//! No log line, at any level, contains a webhook secret or a search text: the whole pipeline runs with every log
//! captured at TRACE (span fields included), then the capture is searched.

use crm_tests::{Pipeline, Reply};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_log_line_contains_a_secret() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    const SECRET: &str = "plain-secret-that-must-never-be-logged";
    let p = Pipeline::spawn().await;
    p.receiver.script([Reply::status(500).body("try again"), Reply::status(200)]);
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    p.api.interest(ws, &token, "logs@example.com").await.expect(201);
    // A search is personal data (a name, an email): it may be logged that there was one, never what it was.
    const SEARCHED: &str = "Searched-Person-Name";
    p.api.get(&format!("/v1/workspaces/{ws}/crm/rows?q={SEARCHED}"), Some(&token)).await.expect(200);
    p.receiver.wait_for(2, Duration::from_secs(10)).await;
    let settings = format!("/v1/workspaces/{ws}/settings/crm-webhook");
    let generated = p.api.post(&format!("{settings}/secret"), Some(&token), &json!({})).await.expect(200).json();
    let new_secret = generated["secret"].as_str().unwrap().to_owned();
    p.api
        .put(
            &settings,
            Some(&token),
            &json!({"enabled": true, "url": "https://10.0.0.1/", "events": [], "secret": SECRET}),
        )
        .await
        .expect(422);
    p.api.post(&format!("{settings}/test"), Some(&token), &json!({})).await.expect(202);
    p.receiver.wait_for(3, Duration::from_secs(10)).await;
    p.receiver.default_reply(Reply::status(410));
    p.api.interest(ws, &token, "gone@example.com").await.expect(201);
    p.receiver.wait_for(4, Duration::from_secs(10)).await;
    let after_gone = format!("/v1/workspaces/{ws}/settings/crm-webhook");
    crm_tests::eventually(Duration::from_secs(5), || async {
        p.api.get(&after_gone, Some(&token)).await.json()["enabled"] == false
    })
    .await;

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(logs.lines().count() > 100, "the capture saw too little to prove anything: {} lines", logs.lines().count());
    assert!(logs.contains("webhook secret generated") && logs.contains("webhook settings saved"));
    let raw_new = new_secret.trim_start_matches("whsec_");
    for (name, needle) in [
        ("set secret", SECRET),
        ("generated secret", new_secret.as_str()),
        ("generated key", raw_new),
        ("search text", SEARCHED),
    ] {
        let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(needle)).collect();
        assert!(leaks.is_empty(), "{name} leaked into the logs: {leaks:?}");
    }
}
