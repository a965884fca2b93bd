//! Bulk recovery through the API, without a worker: the deliveries are made `failed` in the database, and the
//! worker's part (attempting what was queued) is played by marking queued deliveries `succeeded`.

use crm_tests::{base_env, eventually, shared_nats_url, ApiProcess, TestApp, TestDb, TestStream};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// Small batches, often: a recovery of a few deliveries takes several visible steps.
fn paced(env: &mut HashMap<String, String>) {
    env.insert("CRM_RECOVERY_BATCH".into(), "2".into());
    env.insert("CRM_RECOVERY_INTERVAL_MS".into(), "100".into());
}

fn settings(ws: Uuid) -> String {
    format!("/v1/workspaces/{ws}/settings/crm-webhook")
}

fn recoveries(ws: Uuid) -> String {
    format!("/v1/workspaces/{ws}/crm-webhook/recoveries")
}

fn webhook(enabled: bool) -> Value {
    json!({"enabled": enabled, "url": "https://crm.example.com/in", "events": ["crm_row.created", "crm_row.updated"],
           "secret": "a-long-enough-webhook-secret"})
}

/// `n` rows, their deliveries made `failed` (as if the receiver had refused them); returns the delivery ids.
async fn failed_deliveries(api: &crm_tests::Api, pool: &PgPool, ws: Uuid, token: &str, n: usize) -> Vec<Uuid> {
    for i in 0..n {
        api.interest(ws, token, &format!("recover{i}-{}@example.com", Uuid::now_v7().simple())).await.expect(201);
    }
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE deliveries SET status = 'failed', attempts = 1 WHERE workspace_id = $1 RETURNING id",
    )
    .bind(ws)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(ids.len(), n);
    ids
}

/// What the worker would do: every queued delivery is attempted, and succeeds.
async fn attempt_queued(pool: &PgPool, ws: Uuid) -> u64 {
    sqlx::query("UPDATE deliveries SET status = 'succeeded', attempts = attempts + 1 WHERE workspace_id = $1 AND status = 'pending'")
        .bind(ws)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
}

async fn pending(pool: &PgPool, ws: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE workspace_id = $1 AND status = 'pending'")
        .bind(ws)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_recovery_is_checked_started_once_and_followed_to_completion() {
    let app = TestApp::spawn_with(paced).await;
    let (ws, admin) = app.workspace_with_token("admin").await;
    let viewer = app.api.create_token(ws, "viewer").await;
    let (_, stranger) = app.workspace_with_token("admin").await;
    let ids = failed_deliveries(&app.api, &app.pool, ws, &admin, 5).await;
    let path = recoveries(ws);
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let body = json!({"since": since, "statuses": ["failed", "dead"]});

    // Who may: admins start, viewers follow; another workspace's token sees nothing.
    app.api.post(&path, None, &body).await.expect_problem(401, None);
    app.api.post(&path, Some(&viewer), &body).await.expect_problem(403, None);
    app.api.post(&path, Some(&stranger), &body).await.expect_problem(404, None);
    // Bad requests name the field and start nothing.
    app.api.post(&path, Some(&admin), &json!({})).await.expect_problem(422, Some("since"));
    let bad = app.api.post(&path, Some(&admin), &json!({"since": "last week", "statuses": ["dead", "retrying"]})).await;
    let bad = bad.expect_problem(422, Some("since")).json();
    assert_eq!(bad["errors"][1]["field"], "statuses[1]", "{bad}");
    let long_ago = (chrono::Utc::now() - chrono::Duration::days(31)).to_rfc3339();
    app.api.post(&path, Some(&admin), &json!({"since": long_ago})).await.expect_problem(422, Some("since"));
    app.api
        .post(&path, Some(&admin), &json!({"since": since, "until": since}))
        .await
        .expect_problem(422, Some("until"));
    app.api
        .post(&path, Some(&admin), &json!({"since": since, "statuses": []}))
        .await
        .expect_problem(422, Some("statuses"));
    // A webhook that is off would only skip what is recovered.
    app.api.put(&settings(ws), Some(&admin), &webhook(false)).await.expect(200);
    app.api.post(&path, Some(&admin), &body).await.expect_problem(409, None);
    let list = app.api.get(&path, Some(&viewer)).await.expect(200).json();
    assert_eq!(list, json!({"recoveries": [], "next_cursor": null}), "nothing was started");
    assert_eq!(pending(&app.pool, ws).await, 0);

    app.api.put(&settings(ws), Some(&admin), &webhook(true)).await.expect(200);
    let started = app.api.post(&path, Some(&admin), &body).await.expect(202);
    let recovery = started.json();
    let id = recovery["id"].as_str().unwrap().to_owned();
    assert_eq!(started.headers["location"].to_str().unwrap(), format!("{path}/{id}"));
    assert_eq!(
        (&recovery["status"], &recovery["matched"], &recovery["queued"]),
        (&json!("running"), &json!(5), &json!(0))
    );
    assert_eq!(recovery["statuses"], json!(["dead", "failed"]));
    assert!(recovery["finished_at"].is_null());

    // The first batch (2) is queued; with no worker to attempt them, two pending deliveries hold the rest back.
    let one = format!("{path}/{id}");
    eventually(Duration::from_secs(10), || async {
        app.api.get(&one, Some(&viewer)).await.expect(200).json()["queued"] == 2
    })
    .await;
    assert_eq!(pending(&app.pool, ws).await, 2);
    // The same request (statuses in another order, the instant in another offset) follows the running one and
    // queues nothing new; a different one must wait for it.
    let same_instant = chrono::DateTime::parse_from_rfc3339(&since)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap());
    let again = json!({"since": same_instant.to_rfc3339(), "statuses": ["dead", "failed", "failed"]});
    let followed = app.api.post(&path, Some(&admin), &again).await.expect(202).json();
    assert_eq!((followed["id"].as_str(), &followed["queued"]), (Some(id.as_str()), &json!(2)));
    let conflict = app.api.post(&path, Some(&admin), &json!({"since": since, "statuses": ["failed"]})).await;
    assert!(conflict.expect_problem(409, None).json()["detail"].as_str().unwrap().contains(&id));
    assert_eq!(pending(&app.pool, ws).await, 2, "the repeated request queued nothing");
    assert_eq!(app.api.get(&path, Some(&viewer)).await.json()["recoveries"].as_array().map(Vec::len), Some(1));

    // As the endpoint works through what is queued, the recovery goes on, and ends.
    eventually(Duration::from_secs(20), || async {
        attempt_queued(&app.pool, ws).await;
        app.api.get(&one, Some(&viewer)).await.expect(200).json()["status"] == "completed"
    })
    .await;
    let done = app.api.get(&one, Some(&viewer)).await.expect(200).json();
    assert_eq!((&done["matched"], &done["queued"]), (&json!(5), &json!(5)));
    assert!(done["finished_at"].is_string());
    let resent: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE id = ANY($1) AND attempts = 2")
        .bind(&ids)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(resent, 5, "every failed delivery was queued once more");
    let list = app.api.get(&path, Some(&viewer)).await.expect(200).json();
    assert_eq!(list["recoveries"][0]["id"], id.as_str());
    app.api.get(&one, Some(&stranger)).await.expect_problem(404, None);
    app.api.get(&format!("{path}/{}", Uuid::now_v7()), Some(&viewer)).await.expect_problem(404, None);
    // Once it has completed, the same request starts a new recovery (which finds nothing failed now).
    let next = app.api.post(&path, Some(&admin), &body).await.expect(202).json();
    assert_ne!(next["id"].as_str(), Some(id.as_str()));
    assert_eq!(next["matched"], 0);
}

#[tokio::test]
async fn a_running_recovery_carries_on_after_crm_api_restarts() {
    let db = TestDb::create().await;
    let stream = TestStream::new(&shared_nats_url());
    let mut env = base_env(&db, &stream);
    paced(&mut env);
    let first = ApiProcess::start(env.clone()).await;
    let pool = db.pool().await;
    let ws = first.api.create_workspace("Restart").await;
    let admin = first.api.create_token(ws, "admin").await;
    first.api.put(&settings(ws), Some(&admin), &webhook(true)).await.expect(200);
    failed_deliveries(&first.api, &pool, ws, &admin, 6).await;
    let since = (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339();
    let recovery = first.api.post(&recoveries(ws), Some(&admin), &json!({"since": since})).await.expect(202).json();
    let one = format!("{}/{}", recoveries(ws), recovery["id"].as_str().unwrap());
    eventually(Duration::from_secs(10), || async { first.api.get(&one, Some(&admin)).await.json()["queued"] == 2 })
        .await;
    first.stop().await;

    // While crm-api is down the first batch is attempted; a new crm-api carries on where the recovery got to.
    attempt_queued(&pool, ws).await;
    let second = ApiProcess::start(env).await;
    eventually(Duration::from_secs(20), || async {
        attempt_queued(&pool, ws).await;
        second.api.get(&one, Some(&admin)).await.json()["status"] == "completed"
    })
    .await;
    let done = second.api.get(&one, Some(&admin)).await.json();
    assert_eq!((&done["matched"], &done["queued"]), (&json!(6), &json!(6)));
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT attempts FROM deliveries WHERE workspace_id = $1")
        .bind(ws)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(attempts, [2; 6], "each delivery was queued once, none twice across the restart");
}
