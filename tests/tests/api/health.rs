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
