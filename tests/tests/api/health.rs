//! Operational routes and the OpenAPI document.

use crm_tests::TestApp;

#[tokio::test]
async fn health_readiness_metrics_and_openapi_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(app.api.get("/healthz", None).await.expect(200).json()["status"], "ok");
    let ready = app.api.get("/readyz", None).await.expect(200).json();
    assert_eq!(ready["checks"]["postgres"], "ok");
    assert_eq!(ready["checks"]["nats"], "ok");
    app.api.get("/admin/workspaces", None).await.expect(401);
    let metrics = app.api.get("/metrics", None).await.expect(200);
    assert!(metrics.headers["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    assert!(metrics.text.trim_end().ends_with("# EOF"));
    assert!(
        metrics.text.contains(r#"http_requests_total{method="GET",route="/admin/workspaces",status="401"} 1"#),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("crm_outbox_backlog"));
    let doc = app.api.get("/openapi.json", None).await.expect(200).json();
    assert!(doc["paths"]["/v1/workspaces/{ws}/crm/interest"]["post"].is_object());
    app.api.get("/no/such/route", None).await.expect_problem(404, None);
    app.api.delete("/healthz", None).await.expect_problem(405, None);
}

#[tokio::test]
async fn readiness_fails_while_nats_is_unreachable() {
    let app = TestApp::spawn_with(|env| {
        env.insert("NATS_URL".into(), format!("nats://127.0.0.1:{}", crm_tests::free_port()));
    })
    .await;
    app.api.get("/healthz", None).await.expect(200);
    let ready = app.api.get("/readyz", None).await.expect(503).json();
    assert_eq!(ready["checks"]["nats"], "unreachable");
    assert_eq!(ready["checks"]["postgres"], "ok");
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_refused_at_once_with_retry_after() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CRM_API_MAX_IN_FLIGHT".into(), "1".into());
    })
    .await;
    let (ws, token) = app.workspace_with_token("editor").await;
    let row = app.api.interest(ws, &token, "held@example.com").await.expect(201).json();
    let id: uuid::Uuid = row["id"].as_str().unwrap().parse().unwrap();

    // Hold the row, so an edit of it waits on the lock while occupying the only slot.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM crm_rows WHERE id = $1 FOR UPDATE").bind(id).execute(&mut *tx).await.unwrap();
    let (api, t, path) = (app.api.clone(), token.clone(), format!("/v1/workspaces/{ws}/crm/rows/{id}"));
    let held =
        tokio::spawn(async move { api.patch(&path, Some(&t), &serde_json::json!({"notes": "waited"}), &[]).await });
    crm_tests::eventually(std::time::Duration::from_secs(5), || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap()
            == 1
    })
    .await;

    let rows = format!("/v1/workspaces/{ws}/crm/rows");
    let refused = app.api.get(&rows, Some(&token)).await.expect_problem(503, None);
    assert_eq!(refused.headers["retry-after"], "1");
    app.api.get("/healthz", None).await.expect(200);
    app.api.get("/metrics", None).await.expect(200);

    tx.commit().await.unwrap();
    assert_eq!(held.await.unwrap().expect(200).json()["notes"], "waited");
    app.api.get(&rows, Some(&token)).await.expect(200);
}

/// The document's `x-minimum-role` of every workspace operation is what the service enforces: a token one role
/// below it is refused with 403 (before anything else is looked at), and a token of that role is not.
#[tokio::test]
async fn every_documented_capability_is_the_one_enforced() {
    let app = TestApp::spawn().await;
    let ws = app.api.create_workspace("Roles").await;
    let mut tokens = std::collections::HashMap::new();
    for role in ["viewer", "editor", "admin"] {
        tokens.insert(role, app.api.create_token(ws, role).await);
    }
    let doc = app.api.get("/openapi.json", None).await.expect(200).json();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            let Some(minimum) = op["x-minimum-role"].as_str() else { continue };
            let url = path.replace("{ws}", &ws.to_string()).replace("{id}", &uuid::Uuid::now_v7().to_string());
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            let body = op["requestBody"].is_object().then(|| serde_json::json!({}));
            let call = |role: &str| {
                let (api, token, method, url, body) =
                    (&app.api, tokens[role].clone(), method.clone(), url.clone(), body.clone());
                async move { api.send(method, &url, Some(&token), body.as_ref(), &[]).await }
            };
            let below = match minimum {
                "editor" => Some("viewer"),
                "admin" => Some("editor"),
                _ => None,
            };
            if let Some(below) = below {
                let refused = call(below).await;
                assert_eq!(refused.status, 403, "{method} {path} with a {below} token: {}", refused.text);
            }
            let allowed = call(minimum).await;
            assert_ne!(allowed.status, 403, "{method} {path} with a {minimum} token: {}", allowed.text);
            assert!(allowed.status.as_u16() < 500, "{method} {path}: {}", allowed.text);
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} workspace operations documented");
}
