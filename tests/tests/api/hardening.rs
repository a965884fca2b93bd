//! Hostile and careless input never costs a 500, a stuck relay or a held slot: NUL in text, rows that grow past
//! their caps, events too large for the stream server, weak or leaked secrets, slow clients.

use crm_tests::api::interest_body;
use crm_tests::{eventually, NatsServer, TestApp, ADMIN_TOKEN};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn counts(app: &TestApp) -> (i64, i64, i64) {
    let q = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&app.pool).await.unwrap() };
    (
        q("SELECT count(*) FROM crm_rows").await,
        q("SELECT coalesce(sum(version), 0)::int8 FROM crm_rows").await,
        q("SELECT count(*) FROM outbox").await + q("SELECT count(*) FROM outbox_parked").await,
    )
}

#[tokio::test]
async fn nul_in_any_text_input_is_a_422_naming_the_field_and_changes_nothing() {
    let app = TestApp::spawn_with(|env| {
        // Keep the outbox still, so "changes nothing" can be counted there.
        env.insert("CRM_RELAY_POLL_MS".into(), "600000".into());
    })
    .await;
    let (ws, token) = app.workspace_with_token("admin").await;
    let row = app.api.interest(ws, &token, "nul@example.com").await.expect(201).json();
    let id = row["id"].as_str().unwrap().to_owned();
    sqlx::query("DELETE FROM outbox").execute(&app.pool).await.unwrap();
    let before = counts(&app).await;

    let rows = format!("/v1/workspaces/{ws}/crm/rows");
    app.api.get(&format!("{rows}?q=a%00b"), Some(&token)).await.expect_problem(422, Some("q"));
    app.api.get(&format!("{rows}?stage=new%00"), Some(&token)).await.expect_problem(422, Some("stage"));
    let deliveries = format!("/v1/workspaces/{ws}/crm-webhook/deliveries?status=%00");
    app.api.get(&deliveries, Some(&token)).await.expect_problem(422, Some("status"));

    let row_path = format!("{rows}/{id}");
    for (body, field) in [
        (json!({"custom_fields": {"x": "x\u{0}y"}}), "custom_fields.x"),
        (json!({"custom_fields": {"deep": {"list": ["ok", "\u{0}"]}}}), "custom_fields.deep.list[1]"),
        (json!({"notes": "a\u{0}"}), "notes"),
        (json!({"owner": "\u{0}"}), "owner"),
    ] {
        app.api.patch(&row_path, Some(&token), &body, &[]).await.expect_problem(422, Some(field));
    }
    let key_with_nul = app.api.patch(&row_path, Some(&token), &json!({"custom_fields": {"k\u{0}": 1}}), &[]).await;
    let problem = key_with_nul.expect_problem(422, None).json();
    assert!(problem["errors"][0]["field"].as_str().unwrap().starts_with("custom_fields.k"), "{problem}");

    let mut interest = interest_body("other@example.com");
    interest["lead"]["company"] = json!("Acme\u{0}");
    let interest_path = format!("/v1/workspaces/{ws}/crm/interest");
    app.api.post(&interest_path, Some(&token), &interest).await.expect_problem(422, Some("lead.company"));
    let mut interest = interest_body("other@example.com");
    interest["interest"]["message"] = json!("hi\u{0}");
    app.api.post(&interest_path, Some(&token), &interest).await.expect_problem(422, Some("interest.message"));

    let settings = format!("/v1/workspaces/{ws}/settings/crm-webhook");
    let body = json!({"enabled": false, "url": "https://crm.example.com/\u{0}", "events": ["crm_row.created"]});
    app.api.put(&settings, Some(&token), &body).await.expect_problem(422, Some("url"));
    let body = json!({"enabled": false, "url": null, "events": ["crm_row.created\u{0}"]});
    app.api.put(&settings, Some(&token), &body).await.expect_problem(422, Some("events[0]"));
    app.api
        .post("/admin/workspaces", Some(ADMIN_TOKEN), &json!({"name": "a\u{0}"}))
        .await
        .expect_problem(422, Some("name"));

    assert_eq!(counts(&app).await, before, "a refused request changed something");
    let settings_saved: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_settings").fetch_one(&app.pool).await.unwrap();
    assert_eq!(settings_saved, 0);
}

#[tokio::test]
async fn custom_fields_cannot_grow_past_their_caps_one_edit_at_a_time() {
    let app = TestApp::spawn().await;
    let (ws, token) = app.workspace_with_token("editor").await;
    let id =
        app.api.interest(ws, &token, "grow@example.com").await.expect(201).json()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/workspaces/{ws}/crm/rows/{id}");

    // One value past the per-value cap.
    let huge = "x".repeat(16_000);
    app.api
        .patch(&path, Some(&token), &json!({"custom_fields": {"blob": huge}}), &[])
        .await
        .expect_problem(422, Some("custom_fields"));
    // Values that each fit, until the merged object would not.
    let value = "y".repeat(4_000);
    let mut accepted = 0;
    let refused = loop {
        let response =
            app.api.patch(&path, Some(&token), &json!({"custom_fields": {format!("k{accepted}"): value}}), &[]).await;
        if response.status != 200 {
            break response;
        }
        accepted += 1;
        assert!(accepted < 45, "the row kept growing");
    };
    assert_eq!(accepted, 4, "16 KiB hold four 4,000-character values");
    let problem = refused.expect_problem(422, Some("custom_fields")).json();
    assert!(problem["detail"].as_str().unwrap().contains("16384"), "{problem}");
    let row = app.api.row(ws, &token, &id).await.expect(200).json();
    assert_eq!(row["version"], 1 + accepted, "the refused edit changed the row");
    // Removing a key makes room again.
    app.api.patch(&path, Some(&token), &json!({"custom_fields": {"k0": null, "k9": "small"}}), &[]).await.expect(200);
}

#[tokio::test]
async fn an_event_too_large_for_the_server_is_parked_without_blocking_other_workspaces_and_can_be_redriven() {
    // A stream server that takes at most 8 KiB per message: a row with long notes makes a bigger event.
    let mut nats = NatsServer::start_with_config("max_payload: 8192\n").await;
    let nats_url = nats.url();
    let app = TestApp::spawn_with(|env| {
        env.insert("NATS_URL".into(), nats_url.clone());
    })
    .await;
    let (ws, token) = app.workspace_with_token("editor").await;
    let (neighbour, neighbour_token) = app.workspace_with_token("editor").await;
    let id =
        app.api.interest(ws, &token, "big@example.com").await.expect(201).json()["id"].as_str().unwrap().to_owned();
    let notes = "n".repeat(6_000);
    app.api
        .patch(&format!("/v1/workspaces/{ws}/crm/rows/{id}"), Some(&token), &json!({"notes": notes}), &[])
        .await
        .expect(200);
    // Committed after the big one: it must not wait behind it.
    app.api.interest(neighbour, &neighbour_token, "small@example.com").await.expect(201);

    let client = async_nats::connect(&nats_url).await.unwrap();
    let js = service_common::nats::jetstream(client);
    eventually(Duration::from_secs(20), || async {
        crm_tests::stream::message_count(&js, &app.stream.stream).await == 2
    })
    .await;
    app.wait_outbox_drained().await;
    let events = crm_tests::stream::events(&js, &app.stream.stream).await;
    assert!(events.iter().any(|e| e.workspace_id == neighbour), "the neighbour's event was not published");

    let parked = app.api.get("/admin/outbox/parked", Some(ADMIN_TOKEN)).await.expect(200).json();
    let list = parked["parked"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{parked}");
    assert!(list[0]["reason"].as_str().unwrap().contains("larger than"), "{parked}");
    assert!(list[0]["size_bytes"].as_i64().unwrap() > 8192 - 4096);
    assert!(!parked.to_string().contains(&notes), "the operator list must not show the row");
    let metrics = app.api.get("/metrics", None).await.text;
    assert!(metrics.lines().any(|l| l == "crm_outbox_parked_events_total 1"), "{metrics}");
    app.api.get("/admin/outbox/parked", None).await.expect_problem(401, None);
    app.api.post("/admin/outbox/parked/999999/redrive", Some(ADMIN_TOKEN), &json!({})).await.expect_problem(404, None);

    // The operator raises the server's limit, then re-drives: the event goes out.
    nats.config = Some("max_payload: 1048576\n".into());
    nats.kill().await;
    nats.restart().await;
    let seq = list[0]["seq"].as_i64().unwrap();
    let client = async_nats::connect(&nats_url).await.unwrap();
    let js = service_common::nats::jetstream(client);
    // The relay's connection learns the new limit when it reconnects; re-drive until the event is published.
    eventually(Duration::from_secs(30), || async {
        let redriven =
            app.api.post(&format!("/admin/outbox/parked/{seq}/redrive"), Some(ADMIN_TOKEN), &json!({})).await;
        assert!(redriven.status == 202 || redriven.status == 404, "{}", redriven.text);
        crm_tests::stream::message_count(&js, &app.stream.stream).await == 3
    })
    .await;
    let parked = app.api.get("/admin/outbox/parked", Some(ADMIN_TOKEN)).await.expect(200).json();
    assert_eq!(parked["parked"], json!([]));
}

#[tokio::test]
async fn a_whsec_secret_must_decode_to_at_least_16_bytes() {
    let app = TestApp::spawn().await;
    let (ws, admin) = app.workspace_with_token("admin").await;
    let path = format!("/v1/workspaces/{ws}/settings/crm-webhook");
    let with = |secret: &str| json!({"enabled": true, "url": "https://crm.example.com/in", "events": ["crm_row.created"], "secret": secret});
    for weak in ["whsec_AA==", "whsec_MTIzNDU2Nzg5MDEyMzQ1", "whsec_"] {
        app.api.put(&path, Some(&admin), &with(weak)).await.expect_problem(422, Some("secret"));
    }
    // 16 bytes is enough.
    app.api.put(&path, Some(&admin), &with("whsec_MTIzNDU2Nzg5MDEyMzQ1Ng==")).await.expect(200);
}

#[tokio::test]
async fn a_replaced_secret_can_be_dropped_at_once() {
    let app = TestApp::spawn().await;
    let (ws, admin) = app.workspace_with_token("admin").await;
    let viewer = app.api.create_token(ws, "viewer").await;
    let path = format!("/v1/workspaces/{ws}/settings/crm-webhook");
    let body = json!({"enabled": true, "url": "https://crm.example.com/in", "events": ["crm_row.created"], "secret": "the-first-secret-which-leaked"});
    app.api.put(&path, Some(&admin), &body).await.expect(200);
    assert!(app.api.get(&path, Some(&admin)).await.expect(200).json()["previous_secret_expires_at"].is_null());
    app.api.post(&format!("{path}/secret"), Some(&admin), &json!({})).await.expect(200);
    let rotating = app.api.get(&path, Some(&admin)).await.expect(200).json();
    assert!(rotating["previous_secret_expires_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{rotating}");

    let drop = format!("{path}/secret/previous");
    app.api.delete(&drop, Some(&viewer)).await.expect_problem(403, None);
    app.api.delete(&drop, Some(&admin)).await.expect(204);
    let after = app.api.get(&path, Some(&admin)).await.expect(200).json();
    assert!(after["previous_secret_expires_at"].is_null(), "{after}");
    assert_eq!(after["secret_set"], true);
    let previous: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT previous_secret_sealed FROM webhook_settings WHERE workspace_id = $1")
            .bind(ws)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(previous.is_none(), "the replaced secret is still stored");
    // Idempotent.
    app.api.delete(&drop, Some(&admin)).await.expect(204);
}

/// Sends `head` (and whatever of a body follows it) on a raw connection, then reads until the server answers or
/// closes; `None` when nothing came within `wait`.
async fn raw_exchange(app: &TestApp, head: &str, wait: Duration) -> Option<String> {
    let addr = app.api.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        return;
                    }
                }
            }
        }
    })
    .await;
    read.ok().map(|()| String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn a_caller_without_the_capability_is_refused_before_its_body_is_read() {
    let app = TestApp::spawn().await;
    let (ws, viewer) = app.workspace_with_token("viewer").await;
    // A body announced as 100 KB, of which 10 bytes ever arrive.
    let head = format!(
        "PATCH /v1/workspaces/{ws}/crm/rows/0190f0d4-0000-7000-8000-000000000000 HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {viewer}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{\"notes\":"
    );
    let answer = raw_exchange(&app, &head, Duration::from_secs(5)).await.expect("no answer while the body trickles");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

#[tokio::test]
async fn slow_bodies_and_slow_heads_are_cut_off() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CRM_API_BODY_TIMEOUT_MS".into(), "300".into());
        env.insert("CRM_API_HEADER_TIMEOUT_MS".into(), "300".into());
    })
    .await;
    let (ws, editor) = app.workspace_with_token("editor").await;
    let head = format!(
        "POST /v1/workspaces/{ws}/crm/interest HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {editor}\r\n\
         content-type: application/json\r\ncontent-length: 5000\r\n\r\n{{\"lead\":"
    );
    let answer = raw_exchange(&app, &head, Duration::from_secs(5)).await.expect("no answer to a trickled body");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A request head that never ends: the connection is closed.
    let answer = raw_exchange(&app, "GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ", Duration::from_secs(5)).await;
    assert!(answer.is_some(), "the server kept a half-sent request head open");
    // Normal requests are unaffected.
    app.api.get("/healthz", None).await.expect(200);
}
