//! A row change arrives at the receiver signed with both schemes, in the documented shape.

use crm_tests::api::interest_body;
use crm_tests::Pipeline;
use serde_json::json;
use std::time::Duration;
use webhook_signing::Verifier;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn payload_validator() -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto-schemas/crm-webhook-payload.v1.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("payload schema")).unwrap();
    jsonschema::options().should_validate_formats(true).build(&schema).expect("schema compiles")
}

fn verify_both(received: &crm_tests::receiver::Received, secret: &str) {
    let verifier = Verifier::from_secret(secret).unwrap();
    let now = chrono::Utc::now().timestamp();
    verifier
        .verify_crm(
            received.header("x-crm-webhook-timestamp"),
            received.header("x-crm-webhook-signature"),
            &received.body,
            now,
            300,
        )
        .expect("x-crm-webhook-signature verifies");
    verifier
        .verify_standard(
            received.header("webhook-id"),
            received.header("webhook-timestamp"),
            received.header("webhook-signature"),
            &received.body,
            now,
            300,
        )
        .expect("Standard Webhooks signature verifies");
}

#[tokio::test]
async fn a_created_row_arrives_signed_in_the_contract_shape() {
    let p = Pipeline::spawn().await;
    let (ws, token) = p.workspace(&p.receiver.url("/hooks/crm"), SECRET).await;
    let row = p.api.interest(ws, &token, "ada@example.com").await.expect(201).json();

    let got = p.receiver.wait_for(1, Duration::from_secs(10)).await;
    let r = &got[0];
    assert_eq!(r.path, "/hooks/crm");
    verify_both(r, SECRET);
    let body = r.json();
    let errors: Vec<String> =
        payload_validator().iter_errors(&body).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(body["type"], "crm_row.created");
    assert_eq!(body["api_version"], "2026-11-01");
    assert_eq!(body["workspace_id"], ws.to_string());
    assert_eq!(body["data"]["trigger"], "lead_interest");
    assert_eq!(body["data"]["row"], row, "the payload's row is the row as the API shows it");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-crm-webhook-event"), "crm_row.created");
    assert_eq!(r.header("x-crm-webhook-attempt"), "1");
    assert_eq!(r.header("x-crm-webhook-id"), body["id"].as_str().unwrap());
    assert_eq!(r.header("webhook-id"), body["id"].as_str().unwrap());
    assert!(r.header("user-agent").starts_with("crm-webhook/"));
    let ts: i64 = r.header("x-crm-webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 30);

    let id = body["id"].as_str().unwrap();
    let delivery = p.wait_status(ws, &token, id, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(delivery["attempt_count"], 1);
    assert_eq!(delivery["row_id"], row["id"]);
    assert_eq!(delivery["attempts"][0]["status_code"], 200);
    assert!(delivery["delivered_at"].is_string());

    // An edit in the sheet arrives as crm_row.updated with what changed.
    let path = format!("/v1/workspaces/{ws}/crm/rows/{}", row["id"].as_str().unwrap());
    let edited =
        p.api.patch(&path, Some(&token), &json!({"pipeline_stage": "meeting_booked"}), &[]).await.expect(200).json();
    let got = p.receiver.wait_for(2, Duration::from_secs(10)).await;
    let update = got[1].json();
    verify_both(&got[1], SECRET);
    assert_eq!(update["type"], "crm_row.updated");
    assert_eq!(update["data"]["trigger"], "crm_edit");
    assert_eq!(update["data"]["changed_fields"], json!(["pipeline_stage"]));
    assert_eq!(update["data"]["previous"], json!({"pipeline_stage": "new"}));
    assert_eq!(update["data"]["row"], edited);
    assert!(payload_validator().is_valid(&update));
}

#[tokio::test]
async fn disabled_webhook_and_unsubscribed_events_are_skipped() {
    let p = Pipeline::spawn().await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    let settings = format!("/v1/workspaces/{ws}/settings/crm-webhook");
    p.api
        .put(
            &settings,
            Some(&token),
            &json!({"enabled": true, "url": p.receiver.url("/in"), "events": ["crm_row.updated"]}),
        )
        .await
        .expect(200);
    let created = p.api.interest(ws, &token, "skip@example.com").await.expect(201).json();
    // Settings are read when the event is handled: let the worker handle this one before changing them.
    let skipped = format!("/v1/workspaces/{ws}/crm-webhook/deliveries?status=skipped");
    crm_tests::eventually(Duration::from_secs(10), || async {
        p.api.get(&skipped, Some(&token)).await.json()["deliveries"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    p.api
        .put(
            &settings,
            Some(&token),
            &json!({"enabled": false, "url": p.receiver.url("/in"), "events": ["crm_row.created", "crm_row.updated"]}),
        )
        .await
        .expect(200);
    p.api.interest(ws, &token, "skip@example.com").await.expect(200);

    let list = format!("/v1/workspaces/{ws}/crm-webhook/deliveries?status=skipped");
    crm_tests::eventually(Duration::from_secs(10), || async {
        p.api.get(&list, Some(&token)).await.json()["deliveries"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    let deliveries = p.api.get(&list, Some(&token)).await.json()["deliveries"].clone();
    let reasons: Vec<&str> = deliveries.as_array().unwrap().iter().map(|d| d["last_error"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["webhook disabled", "event not subscribed"]);
    assert_eq!(deliveries[1]["row_id"], created["id"]);
    assert_eq!(deliveries[1]["attempts"], 0);
    assert_eq!(p.receiver.connections(), 0, "nothing was sent");
}

#[tokio::test]
async fn test_event_is_delivered_and_rotation_signs_with_both_secrets() {
    let p = Pipeline::spawn().await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    let settings = format!("/v1/workspaces/{ws}/settings/crm-webhook");
    let queued = p.api.post(&format!("{settings}/test"), Some(&token), &json!({})).await.expect(202).json();
    let id = queued["delivery_id"].as_str().unwrap().to_owned();
    // The delivery is visible at once, before the worker has seen it.
    let first = p.delivery(ws, &token, &id).await;
    assert!(matches!(first["status"].as_str(), Some("pending" | "succeeded")), "{first}");
    let got = p.receiver.wait_for(1, Duration::from_secs(10)).await;
    let body = got[0].json();
    assert_eq!((body["type"].as_str(), body["data"]["trigger"].as_str()), (Some("webhook.test"), Some("test")));
    assert!(body["data"]["row"].is_null());
    assert_eq!(body["id"], id.as_str());
    p.wait_status(ws, &token, &id, "succeeded", Duration::from_secs(5)).await;

    // Rotate: the new secret replaces the old; for 24 h both signatures are sent, so either verifies.
    let rotated = p.api.post(&format!("{settings}/secret"), Some(&token), &json!({})).await.expect(200).json();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    p.api.interest(ws, &token, "rotate@example.com").await.expect(201);
    let got = p.receiver.wait_for(2, Duration::from_secs(10)).await;
    let r = &got[1];
    assert_eq!(r.header("webhook-signature").split(' ').count(), 2, "{}", r.header("webhook-signature"));
    assert_eq!(r.header("x-crm-webhook-signature").split(' ').count(), 2);
    verify_both(r, SECRET);
    verify_both(r, &new_secret);
    assert!(Verifier::from_secret("an-unrelated-secret-value")
        .unwrap()
        .verify_standard(
            r.header("webhook-id"),
            r.header("webhook-timestamp"),
            r.header("webhook-signature"),
            &r.body,
            chrono::Utc::now().timestamp(),
            300
        )
        .is_err());
}

#[tokio::test]
async fn delivery_log_lists_filters_pages_and_redelivers() {
    let p = Pipeline::spawn().await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    let viewer = p.api.create_token(ws, "viewer").await;
    for i in 0..3 {
        p.api
            .post(
                &format!("/v1/workspaces/{ws}/crm/interest"),
                Some(&token),
                &interest_body(&format!("log{i}@example.com")),
            )
            .await
            .expect(201);
    }
    p.receiver.wait_for(3, Duration::from_secs(10)).await;
    let base = format!("/v1/workspaces/{ws}/crm-webhook/deliveries");
    crm_tests::eventually(Duration::from_secs(5), || async {
        p.api.get(&format!("{base}?status=succeeded"), Some(&viewer)).await.json()["deliveries"]
            .as_array()
            .map(Vec::len)
            == Some(3)
    })
    .await;
    let page1 = p.api.get(&format!("{base}?limit=2"), Some(&viewer)).await.expect(200).json();
    assert_eq!(page1["deliveries"].as_array().unwrap().len(), 2);
    let d = &page1["deliveries"][0];
    for key in [
        "id",
        "event_type",
        "row_id",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
        "next_attempt_at",
    ] {
        assert!(d.get(key).is_some(), "missing {key} in {d}");
    }
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = p.api.get(&format!("{base}?limit=2&cursor={cursor}"), Some(&viewer)).await.expect(200).json();
    assert_eq!(page2["deliveries"].as_array().unwrap().len(), 1);
    assert!(page2["next_cursor"].is_null());
    p.api.get(&format!("{base}?status=lost"), Some(&viewer)).await.expect_problem(422, Some("status"));
    p.api.get(&format!("{base}?status=failed"), Some(&viewer)).await.expect(200);

    // Redeliver: same webhook id, attempt numbers go on; only admins; not while in progress.
    let id = d["id"].as_str().unwrap();
    let redeliver = format!("{base}/{id}/redeliver");
    p.api.post(&redeliver, Some(&viewer), &json!({})).await.expect_problem(403, None);
    p.api
        .post(&format!("{base}/{}/redeliver", uuid::Uuid::now_v7()), Some(&token), &json!({}))
        .await
        .expect_problem(404, None);
    let (_, stranger) = p.workspace(&p.receiver.url("/other"), SECRET).await;
    p.api.post(&redeliver, Some(&stranger), &json!({})).await.expect_problem(404, None);
    p.api.get(&format!("{base}/{id}"), Some(&stranger)).await.expect_problem(404, None);
    p.api.get(&base, None).await.expect_problem(401, None);
    p.api.post(&redeliver, Some(&token), &json!({})).await.expect(202);
    let got = p.receiver.wait_for(4, Duration::from_secs(10)).await;
    let again = &got[3];
    assert_eq!(again.webhook_id(), id);
    assert_eq!(again.header("x-crm-webhook-attempt"), "2");
    verify_both(again, SECRET);
    let delivery = p.wait_status(ws, &token, id, "succeeded", Duration::from_secs(5)).await;
    let attempts: Vec<i64> =
        delivery["attempts"].as_array().unwrap().iter().map(|a| a["attempt"].as_i64().unwrap()).collect();
    assert_eq!(attempts, [1, 2]);
}

#[tokio::test]
async fn a_settings_change_reaches_the_worker_at_once() {
    // The worker caches settings for a minute; this passes only because crm-api's change invalidates the cache.
    let p = Pipeline::spawn().await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), SECRET).await;
    p.api.interest(ws, &token, "first@example.com").await.expect(201);
    p.receiver.wait_for(1, Duration::from_secs(10)).await;
    let moved = crm_tests::Receiver::start().await;
    let settings = format!("/v1/workspaces/{ws}/settings/crm-webhook");
    let new_secret = "whsec_c2Vjb25kLXNlY3JldC1mb3ItdGhlLW5ldy1lbmRwb2ludA==";
    p.api
        .put(
            &settings,
            Some(&token),
            &json!({"enabled": true, "url": moved.url("/moved"), "events": ["crm_row.created"], "secret": new_secret}),
        )
        .await
        .expect(200);
    p.api.interest(ws, &token, "second@example.com").await.expect(201);
    let got = moved.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].path, "/moved");
    verify_both(&got[0], new_secret);
    assert_eq!(p.receiver.count(), 1, "the old URL was used after the change");
}

#[tokio::test]
async fn a_delivery_shows_each_attempts_request_as_the_receiver_got_it_with_signatures_elided() {
    let p = Pipeline::spawn().await;
    p.receiver.script([crm_tests::Reply::status(503).body("try later")]);
    let (ws, token) = p.workspace(&p.receiver.url("/hooks/crm"), SECRET).await;
    let viewer = p.api.create_token(ws, "viewer").await;
    p.api.interest(ws, &token, "detail@example.com").await.expect(201);
    let got = p.receiver.wait_for(2, Duration::from_secs(10)).await;
    let id = got[0].webhook_id();
    p.wait_status(ws, &token, &id, "succeeded", Duration::from_secs(5)).await;

    let response = p.api.get(&format!("/v1/workspaces/{ws}/crm-webhook/deliveries/{id}"), Some(&viewer)).await;
    assert!(!response.text.contains(SECRET) && !response.text.contains(&SECRET[6..]), "the secret was shown");
    let delivery = response.expect(200).json();
    let request = &delivery["request"];
    assert_eq!((&request["method"], &request["url"]), (&json!("POST"), &json!(p.receiver.url("/hooks/crm"))));
    assert_eq!(request["body"].as_str().unwrap().as_bytes(), &got[0].body[..], "the exact bytes the receiver got");
    for (attempt, received) in delivery["attempts"].as_array().unwrap().iter().zip(&got) {
        let shown: Vec<(&str, &str)> = attempt["request_headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["name"].as_str().unwrap(), h["value"].as_str().unwrap()))
            .collect();
        assert_eq!(shown.len(), 10, "{shown:?}");
        for (name, value) in shown {
            match name {
                "x-crm-webhook-signature" => assert_eq!(value, "sha256=<elided>"),
                "webhook-signature" => assert_eq!(value, "v1,<elided>"),
                _ => assert_eq!(value, received.header(name), "{name} as the receiver got it"),
            }
        }
    }
    assert_eq!(delivery["attempts"][0]["status_code"], 503);
    assert_eq!(delivery["attempts"][0]["response_excerpt"], "try later");
    assert_eq!(delivery["attempts"][1]["request_headers"][5]["value"], "2", "x-crm-webhook-attempt");
}
