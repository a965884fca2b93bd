//! `/admin/*`: workspaces and tokens.

use crm_tests::{TestApp, ADMIN_TOKEN};
use serde_json::json;

#[tokio::test]
async fn creates_and_lists_workspaces_without_secrets_or_full_urls() {
    let app = TestApp::spawn().await;
    let created =
        app.api.post("/admin/workspaces", Some(ADMIN_TOKEN), &json!({"name": "Acme"})).await.expect(201).json();
    assert_eq!(created["name"], "Acme");
    assert!(created["id"].as_str().is_some() && created["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let ws = created["id"].as_str().unwrap().to_owned();

    let token = app.api.create_token(ws.parse().unwrap(), "admin").await;
    let secret = "a-very-secret-webhook-key-1234";
    app.api
        .put(
            &format!("/v1/workspaces/{ws}/settings/crm-webhook"),
            Some(&token),
            &json!({"enabled": true, "url": "https://crm.example.com/hooks/in?key=private-query", "events": ["crm_row.created"], "secret": secret}),
        )
        .await
        .expect(200);

    let list = app.api.get("/admin/workspaces", Some(ADMIN_TOKEN)).await.expect(200);
    assert!(!list.text.contains(secret) && !list.text.contains("private-query") && !list.text.contains("/hooks/in"));
    let body = list.json();
    let entry = body["workspaces"].as_array().unwrap().iter().find(|w| w["id"] == ws.as_str()).unwrap().clone();
    assert_eq!(entry["crm_webhook"], json!({"enabled": true, "url_host": "crm.example.com", "secret_set": true}));
    assert!(body["next_cursor"].is_null());
}

#[tokio::test]
async fn workspace_list_pages_with_a_cursor() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        app.api.create_workspace(&format!("w{i}")).await;
    }
    let first = app.api.get("/admin/workspaces?limit=2", Some(ADMIN_TOKEN)).await.expect(200).json();
    assert_eq!(first["workspaces"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().expect("a next cursor").to_owned();
    let second =
        app.api.get(&format!("/admin/workspaces?limit=2&cursor={cursor}"), Some(ADMIN_TOKEN)).await.expect(200).json();
    assert_eq!(second["workspaces"].as_array().unwrap().len(), 1);
    assert!(second["next_cursor"].is_null());
    app.api.get("/admin/workspaces?limit=0", Some(ADMIN_TOKEN)).await.expect_problem(422, Some("limit"));
    app.api.get("/admin/workspaces?cursor=%21%21", Some(ADMIN_TOKEN)).await.expect_problem(422, Some("cursor"));
}

#[tokio::test]
async fn admin_routes_need_the_admin_token() {
    let app = TestApp::spawn().await;
    let (ws, workspace_token) = app.workspace_with_token("admin").await;
    app.api.get("/admin/workspaces", None).await.expect_problem(401, None);
    app.api.get("/admin/workspaces", Some("wrong-token")).await.expect_problem(401, None);
    app.api.get("/admin/workspaces", Some(&workspace_token)).await.expect_problem(401, None);
    app.api.post("/admin/workspaces", None, &json!({"name": "x"})).await.expect_problem(401, None);
    app.api
        .post(&format!("/admin/workspaces/{ws}/tokens"), Some(&workspace_token), &json!({"role": "admin", "name": "x"}))
        .await
        .expect_problem(401, None);
}

#[tokio::test]
async fn admin_api_is_off_without_an_admin_token() {
    let app = TestApp::spawn_with(|env| {
        env.remove("CRM_ADMIN_TOKEN");
    })
    .await;
    app.api.get("/admin/workspaces", Some(ADMIN_TOKEN)).await.expect_problem(404, None);
}

#[tokio::test]
async fn bad_workspace_and_token_bodies_name_the_field() {
    let app = TestApp::spawn().await;
    app.api.post("/admin/workspaces", Some(ADMIN_TOKEN), &json!({"name": ""})).await.expect_problem(422, Some("name"));
    app.api
        .post("/admin/workspaces", Some(ADMIN_TOKEN), &json!({"name": "x", "plan": "gold"}))
        .await
        .expect_problem(422, Some("plan"));
    app.api.post("/admin/workspaces", Some(ADMIN_TOKEN), &json!({})).await.expect_problem(422, Some("name"));
    let ws = app.api.create_workspace("Acme").await;
    let tokens = format!("/admin/workspaces/{ws}/tokens");
    app.api
        .post(&tokens, Some(ADMIN_TOKEN), &json!({"role": "owner", "name": "x"}))
        .await
        .expect_problem(422, Some("role"));
    app.api
        .post(&tokens, Some(ADMIN_TOKEN), &json!({"role": "viewer", "name": "x", "scopes": []}))
        .await
        .expect_problem(422, Some("scopes"));
    let missing = format!("/admin/workspaces/{}/tokens", uuid::Uuid::now_v7());
    app.api.post(&missing, Some(ADMIN_TOKEN), &json!({"role": "viewer", "name": "x"})).await.expect_problem(404, None);
    app.api
        .post("/admin/workspaces/not-a-uuid/tokens", Some(ADMIN_TOKEN), &json!({"role": "viewer", "name": "x"}))
        .await
        .expect_problem(404, None);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens").fetch_one(&app.pool).await.unwrap();
    assert_eq!(count, 0, "rejected requests created tokens");
}

#[tokio::test]
async fn tokens_are_stored_hashed_shown_once_and_revoked_at_once() {
    let app = TestApp::spawn().await;
    let ws = app.api.create_workspace("Acme").await;
    let created = app
        .api
        .post(
            &format!("/admin/workspaces/{ws}/tokens"),
            Some(ADMIN_TOKEN),
            &json!({"role": "viewer", "name": "reporting"}),
        )
        .await
        .expect(201)
        .json();
    assert_eq!(created["role"], "viewer");
    assert_eq!(created["name"], "reporting");
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();

    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM api_tokens").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored.len(), 32);
    assert!(!stored.windows(8).any(|w| token.as_bytes().windows(8).any(|t| t == w)), "token stored in clear");

    let rows = format!("/v1/workspaces/{ws}/crm/rows");
    app.api.get(&rows, Some(&token)).await.expect(200);
    app.api.delete(&format!("/admin/workspaces/{ws}/tokens/{id}"), Some(ADMIN_TOKEN)).await.expect(204);
    app.api.get(&rows, Some(&token)).await.expect_problem(401, None);
    app.api.delete(&format!("/admin/workspaces/{ws}/tokens/{id}"), Some(ADMIN_TOKEN)).await.expect_problem(404, None);
    let other = app.api.create_workspace("Other").await;
    app.api.create_token(ws, "viewer").await;
    let id2: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_tokens").fetch_one(&app.pool).await.unwrap();
    app.api
        .delete(&format!("/admin/workspaces/{other}/tokens/{id2}"), Some(ADMIN_TOKEN))
        .await
        .expect_problem(404, None);
    app.api.delete(&format!("/admin/workspaces/{ws}/tokens/{id2}"), None).await.expect_problem(401, None);
}

#[tokio::test]
async fn a_revoked_token_stops_working_on_every_replica_at_once() {
    let app = TestApp::spawn().await;
    let other = crm_tests::ApiProcess::start(crm_tests::base_env(&app.db, &app.stream)).await;
    let ws = app.api.create_workspace("Acme").await;
    let created = app
        .api
        .post(&format!("/admin/workspaces/{ws}/tokens"), Some(ADMIN_TOKEN), &json!({"role": "viewer", "name": "r"}))
        .await
        .expect(201)
        .json();
    let (token, id) = (created["token"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().to_owned());
    let rows = format!("/v1/workspaces/{ws}/crm/rows");
    // Both replicas now know (and cache) the token.
    app.api.get(&rows, Some(&token)).await.expect(200);
    other.api.get(&rows, Some(&token)).await.expect(200);
    app.api.delete(&format!("/admin/workspaces/{ws}/tokens/{id}"), Some(ADMIN_TOKEN)).await.expect(204);
    app.api.get(&rows, Some(&token)).await.expect_problem(401, None);
    // The other replica learns by notification: within moments, far inside the cache's lifetime.
    crm_tests::eventually(std::time::Duration::from_secs(2), || async {
        other.api.get(&rows, Some(&token)).await.status == 401
    })
    .await;
    other.stop().await;
}

#[tokio::test]
async fn requests_racing_a_revocation_on_two_replicas_never_bring_the_token_back() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let app = TestApp::spawn().await;
    let other = crm_tests::ApiProcess::start(crm_tests::base_env(&app.db, &app.stream)).await;
    let ws = app.api.create_workspace("Acme").await;
    let created = app
        .api
        .post(&format!("/admin/workspaces/{ws}/tokens"), Some(ADMIN_TOKEN), &json!({"role": "viewer", "name": "r"}))
        .await
        .expect(201)
        .json();
    let (token, id) = (created["token"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().to_owned());
    let rows = format!("/v1/workspaces/{ws}/crm/rows");
    let revoked = Arc::new(AtomicBool::new(false));
    let after = Arc::new(AtomicUsize::new(0));
    // Readers on both replicas keep looking the token up (and refilling the caches) while the revocation commits.
    let mut readers = Vec::new();
    for api in [app.api.clone(), other.api.clone(), app.api.clone(), other.api.clone()] {
        let (rows, token, revoked, after) = (rows.clone(), token.clone(), revoked.clone(), after.clone());
        readers.push(tokio::spawn(async move {
            let mut accepted_after_revocation = 0;
            while after.load(Ordering::SeqCst) < 400 {
                let started_after = revoked.load(Ordering::SeqCst);
                let status = api.get(&rows, Some(&token)).await.status;
                if started_after {
                    after.fetch_add(1, Ordering::SeqCst);
                    if status != 401 {
                        accepted_after_revocation += 1;
                    }
                }
            }
            accepted_after_revocation
        }));
    }
    app.api.get(&rows, Some(&token)).await.expect(200);
    other.api.get(&rows, Some(&token)).await.expect(200);
    app.api.delete(&format!("/admin/workspaces/{ws}/tokens/{id}"), Some(ADMIN_TOKEN)).await.expect(204);
    revoked.store(true, Ordering::SeqCst);
    let mut accepted = 0;
    for reader in readers {
        accepted += reader.await.unwrap();
    }
    assert_eq!(accepted, 0, "requests started after the DELETE answered were accepted with the revoked token");
    other.stop().await;
}
