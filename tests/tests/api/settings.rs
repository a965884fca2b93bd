//! Webhook settings: capability-gated, write-only secret encrypted at rest, SSRF-checked URL.

use crm_events::EventType;
use crm_tests::{stream, Response, TestApp};
use serde_json::{json, Value};

const SECRET: &str = "s3cr3t-webhook-value-never-shown";

fn settings_path(ws: uuid::Uuid) -> String {
    format!("/v1/workspaces/{ws}/settings/crm-webhook")
}

fn good_settings() -> Value {
    json!({"enabled": true, "url": "https://crm.example.com/webhooks/leads", "events": ["crm_row.created", "crm_row.updated"], "secret": SECRET})
}

#[tokio::test]
async fn settings_default_then_save_masked_and_encrypted() {
    let app = TestApp::spawn().await;
    let (ws, admin) = app.workspace_with_token("admin").await;
    let path = settings_path(ws);

    let defaults = app.api.get(&path, Some(&admin)).await.expect(200).json();
    assert_eq!(
        defaults,
        json!({"enabled": false, "url": null, "events": ["crm_row.created", "crm_row.updated"], "secret_set": false,
               "secret_last4": null, "updated_at": null, "disabled_reason": null, "previous_secret_expires_at": null,
               "max_per_second": null})
    );

    let saved = app.api.put(&path, Some(&admin), &good_settings()).await.expect(200);
    assert!(!saved.text.contains(SECRET));
    let saved = saved.json();
    assert_eq!(saved["enabled"], true);
    assert_eq!(saved["url"], "https://crm.example.com/webhooks/leads");
    assert_eq!(saved["secret_set"], true);
    assert_eq!(saved["secret_last4"], "hown");
    assert!(saved["updated_at"].as_str().is_some());
    assert!(saved.get("secret").is_none());

    // Absent secret keeps the current one.
    let kept = app
        .api
        .put(
            &path,
            Some(&admin),
            &json!({"enabled": false, "url": "https://crm.example.com/x", "events": ["crm_row.updated"]}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!((kept["secret_set"].as_bool(), kept["secret_last4"].as_str()), (Some(true), Some("hown")));
    assert_eq!(kept["events"], json!(["crm_row.updated"]));

    // At rest: sealed, not readable, bound to the workspace.
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT secret_sealed FROM webhook_settings WHERE workspace_id = $1")
        .bind(ws)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!sealed.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "secret stored in clear");
    let dump: String =
        sqlx::query_scalar("SELECT row_to_json(s)::text FROM webhook_settings s").fetch_one(&app.pool).await.unwrap();
    assert!(!dump.contains(SECRET));
    let ring = service_common::SecretKeyring::from_env_values(&crm_tests::secret_key_b64(), None).unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(ring.open(&sealed, ws.as_bytes()).unwrap().expose_secret(), SECRET);
}

#[tokio::test]
async fn only_admins_write_settings_and_others_get_403_or_404() {
    let app = TestApp::spawn().await;
    let (ws, admin) = app.workspace_with_token("admin").await;
    let viewer = app.api.create_token(ws, "viewer").await;
    let editor = app.api.create_token(ws, "editor").await;
    let (_, stranger) = app.workspace_with_token("admin").await;
    let path = settings_path(ws);
    app.api.get(&path, Some(&viewer)).await.expect(200);
    app.api.get(&path, None).await.expect_problem(401, None);
    app.api.get(&path, Some(&stranger)).await.expect_problem(404, None);
    for token in [&viewer, &editor] {
        app.api.put(&path, Some(token), &good_settings()).await.expect_problem(403, None);
        app.api.post(&format!("{path}/secret"), Some(token), &json!({})).await.expect_problem(403, None);
        app.api.post(&format!("{path}/test"), Some(token), &json!({})).await.expect_problem(403, None);
    }
    app.api.put(&path, Some(&stranger), &good_settings()).await.expect_problem(404, None);
    app.api.post(&format!("{path}/secret"), Some(&stranger), &json!({})).await.expect_problem(404, None);
    app.api.post(&format!("{path}/test"), Some(&stranger), &json!({})).await.expect_problem(404, None);
    app.api.put(&path, None, &good_settings()).await.expect_problem(401, None);
    app.api.post(&format!("{path}/secret"), None, &json!({})).await.expect_problem(401, None);
    app.api.post(&format!("{path}/test"), None, &json!({})).await.expect_problem(401, None);
    assert_eq!(app.api.get(&path, Some(&admin)).await.expect(200).json()["secret_set"], false);
}

#[tokio::test]
async fn bad_settings_name_the_field_and_save_nothing() {
    let app = TestApp::spawn().await;
    let (ws, admin) = app.workspace_with_token("admin").await;
    let path = settings_path(ws);
    let with = |key: &str, value: Value| {
        let mut body = good_settings();
        body[key] = value;
        body
    };
    let hostile_urls = [
        "http://crm.example.com/hook",
        "https://localhost/hook",
        "https://127.0.0.1/hook",
        "https://2130706433/",
        "https://0x7f.0.0.1/",
        "https://[::ffff:127.0.0.1]/",
        "https://10.1.2.3/",
        "https://169.254.169.254/latest/meta-data/",
        "https://good.example@127.0.0.1/",
        "https://printer.local./",
        "ftp://crm.example.com/",
        "not a url",
    ];
    for url in hostile_urls {
        let rejected =
            app.api.put(&path, Some(&admin), &with("url", json!(url))).await.expect_problem(422, Some("url"));
        assert!(!rejected.text.contains(SECRET));
    }
    let mut unknown = good_settings();
    unknown["retries"] = json!(3);
    for (body, field) in [
        (with("events", json!(["crm_row.deleted"])), "events[0]"),
        (with("events", json!([])), "events"),
        (with("secret", json!("short")), "secret"),
        (with("secret", json!("whsec_***not-base64***")), "secret"),
        (with("enabled", json!("yes")), "enabled"),
        (unknown, "retries"),
        (json!({"enabled": true, "events": []}), "url"),
        (json!({"enabled": true, "url": null, "events": ["crm_row.created"], "secret": SECRET}), "url"),
        (json!({"enabled": true, "url": "https://crm.example.com/x", "events": ["crm_row.created"]}), "secret"),
    ] {
        let rejected = app.api.put(&path, Some(&admin), &body).await.expect_problem(422, Some(field));
        assert!(!rejected.text.contains(SECRET), "error echoed the secret: {}", rejected.text);
    }
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_settings WHERE secret_sealed IS NOT NULL OR url IS NOT NULL")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows, 0, "a rejected request saved something");
    assert_eq!(app.api.get(&path, Some(&admin)).await.expect(200).json()["updated_at"], Value::Null);
}

#[tokio::test]
async fn generated_secret_is_whsec_shown_once_and_rotates() {
    let app = TestApp::spawn().await;
    let (ws, admin) = app.workspace_with_token("admin").await;
    let path = settings_path(ws);
    app.api.put(&path, Some(&admin), &good_settings()).await.expect(200);
    let generated = app.api.post(&format!("{path}/secret"), Some(&admin), &json!({})).await.expect(200).json();
    let secret = generated["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 30);
    assert!(webhook_signing::SigningKey::from_secret(&secret).is_ok());
    let after = app.api.get(&path, Some(&admin)).await.expect(200);
    assert!(!after.text.contains(&secret));
    assert_eq!(after.json()["secret_last4"], secret[secret.len() - 4..]);
    let (previous, expires): (Option<Vec<u8>>, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
        "SELECT previous_secret_sealed, previous_secret_expires_at FROM webhook_settings WHERE workspace_id = $1",
    )
    .bind(ws)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(previous.is_some(), "the replaced secret is kept for the rotation window");
    let hours = (expires.unwrap() - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "{hours}");
}

#[tokio::test]
async fn test_event_is_queued_through_the_pipeline() {
    let app = TestApp::spawn().await;
    let (ws, admin) = app.workspace_with_token("admin").await;
    let queued =
        app.api.post(&format!("{}/test", settings_path(ws)), Some(&admin), &json!({})).await.expect(202).json();
    let delivery_id = queued["delivery_id"].as_str().unwrap().to_owned();
    app.wait_outbox_drained().await;
    let js = app.stream.jetstream().await;
    let events = stream::events(&js, &app.stream.stream).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, EventType::WebhookTest);
    assert_eq!(events[0].id.to_string(), delivery_id);
    assert!(events[0].row.is_none());
}

/// Exercises every route once with a known secret set, and checks no response body ever shows it, while the
/// database holds it only sealed.
#[tokio::test]
async fn no_response_of_any_route_contains_the_secret() {
    let app = TestApp::spawn().await;
    let admin_token = crm_tests::ADMIN_TOKEN;
    let mut seen: Vec<Response> = Vec::new();
    let created = app.api.post("/admin/workspaces", Some(admin_token), &json!({"name": "Leaky"})).await;
    let ws: uuid::Uuid = created.json()["id"].as_str().unwrap().parse().unwrap();
    seen.push(created);
    let token_resp = app
        .api
        .post(&format!("/admin/workspaces/{ws}/tokens"), Some(admin_token), &json!({"role": "admin", "name": "a"}))
        .await;
    let token = token_resp.json()["token"].as_str().unwrap().to_owned();
    seen.push(token_resp);
    let path = settings_path(ws);
    seen.push(app.api.put(&path, Some(&token), &good_settings()).await.expect(200));
    seen.push(app.api.get(&path, Some(&token)).await);
    seen.push(app.api.get("/admin/workspaces", Some(admin_token)).await);
    let row = app.api.interest(ws, &token, "leak@example.com").await;
    let id = row.json()["id"].as_str().unwrap().to_owned();
    seen.push(row);
    seen.push(app.api.get(&format!("/v1/workspaces/{ws}/crm/rows"), Some(&token)).await);
    seen.push(app.api.row(ws, &token, &id).await);
    seen.push(
        app.api.patch(&format!("/v1/workspaces/{ws}/crm/rows/{id}"), Some(&token), &json!({"notes": "n"}), &[]).await,
    );
    let test = app.api.post(&format!("{path}/test"), Some(&token), &json!({})).await;
    let test_delivery = test.json()["delivery_id"].as_str().unwrap_or_default().to_owned();
    seen.push(test);
    let log = format!("/v1/workspaces/{ws}/crm-webhook");
    seen.push(app.api.get(&format!("{log}/deliveries/{test_delivery}"), Some(&token)).await.expect(200));
    seen.push(app.api.get(&format!("{log}/stats"), Some(&token)).await.expect(200));
    seen.push(app.api.get(&format!("{log}/health"), Some(&token)).await.expect(200));
    seen.push(app.api.post(&format!("{log}/health/resume"), Some(&token), &json!({})).await.expect(202));
    let since = chrono::Utc::now().to_rfc3339();
    seen.push(app.api.post(&format!("{log}/recoveries"), Some(&token), &json!({"since": since})).await.expect(202));
    seen.push(app.api.get(&format!("{log}/recoveries"), Some(&token)).await.expect(200));
    seen.push(
        app.api
            .put(
                &path,
                Some(&token),
                &json!({"enabled": true, "url": "https://10.0.0.1/", "events": [], "secret": SECRET}),
            )
            .await,
    );
    seen.push(app.api.get("/metrics", None).await);
    seen.push(app.api.get("/openapi.json", None).await);
    seen.push(app.api.get("/readyz", None).await);
    let tokens_list = app
        .api
        .post(&format!("/admin/workspaces/{ws}/tokens"), Some(admin_token), &json!({"role": "viewer", "name": "v"}))
        .await;
    seen.push(tokens_list);
    for response in &seen {
        assert!(!response.text.contains(SECRET), "a response showed the secret: {}", response.text);
        for value in response.headers.values() {
            assert!(!value.to_str().unwrap_or("").contains(SECRET));
        }
    }
    // The generated secret appears in its own response only.
    let generated = app.api.post(&format!("{path}/secret"), Some(&token), &json!({})).await.expect(200).json();
    let new_secret = generated["secret"].as_str().unwrap();
    for later in [app.api.get(&path, Some(&token)).await, app.api.get("/admin/workspaces", Some(admin_token)).await] {
        assert!(!later.text.contains(new_secret) && !later.text.contains(SECRET));
    }
    app.wait_outbox_drained().await;
    let js = app.stream.jetstream().await;
    for message in stream::messages(&js, &app.stream.stream).await {
        let body = String::from_utf8_lossy(&message.payload);
        assert!(!body.contains(SECRET) && !body.contains(new_secret), "an event carried a secret");
    }
}

#[tokio::test]
async fn a_rate_cap_is_optional_bounded_and_shown() {
    let app = TestApp::spawn().await;
    let (ws, admin) = app.workspace_with_token("admin").await;
    let path = settings_path(ws);
    for bad in [json!(0), json!(-1), json!(10_001), json!("10")] {
        let mut body = good_settings();
        body["max_per_second"] = bad.clone();
        app.api.put(&path, Some(&admin), &body).await.expect_problem(422, Some("max_per_second"));
        assert_eq!(app.api.get(&path, Some(&admin)).await.json()["secret_set"], false, "{bad}: nothing saved");
    }
    let mut body = good_settings();
    body["max_per_second"] = json!(2.5);
    assert_eq!(app.api.put(&path, Some(&admin), &body).await.expect(200).json()["max_per_second"], 2.5);
    assert_eq!(app.api.get(&path, Some(&admin)).await.json()["max_per_second"], 2.5);
    // PUT replaces: without it, there is no cap.
    let saved = app.api.put(&path, Some(&admin), &good_settings()).await.expect(200).json();
    assert_eq!(saved["max_per_second"], Value::Null);
}
