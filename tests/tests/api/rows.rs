//! CRM rows: the interest upsert, list, get and the sheet's cell edit, with every error they can give.

use crm_events::{EventType, Trigger};
use crm_tests::api::interest_body;
use crm_tests::{metric, stream, TestApp};
use serde_json::json;

#[tokio::test]
async fn interest_creates_then_updates_a_row_with_one_event_each() {
    let app = TestApp::spawn().await;
    let (ws, token) = app.workspace_with_token("editor").await;

    let created = app.api.interest(ws, &token, "Ada@Example.com").await.expect(201);
    assert_eq!(created.headers["etag"], "\"1\"");
    let row = created.json();
    assert_eq!(row["version"], 1);
    assert_eq!(row["interest_count"], 1);
    assert_eq!(row["pipeline_stage"], "new");
    assert_eq!(row["email"], "Ada@Example.com");
    assert_eq!(row["workspace_id"], ws.to_string());
    assert_eq!(row["campaign"], "autumn-outreach");
    assert_eq!(row["interest_type"], "positive_reply");
    assert!(row["deal_value"].is_null() && row["custom_fields"] == json!({}));

    // Same lead, other spelling of the email: an update that counts the interest and keeps contact edits.
    let mut again = interest_body("ada@EXAMPLE.com");
    again["lead"]["first_name"] = json!("Augusta");
    again["interest"]["type"] = json!("meeting_request");
    let updated =
        app.api.post(&format!("/v1/workspaces/{ws}/crm/interest"), Some(&token), &again).await.expect(200).json();
    assert_eq!(updated["id"], row["id"]);
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["interest_count"], 2);
    assert_eq!(updated["first_name"], "Ada", "an inbound pipeline must not overwrite a filled contact field");
    assert_eq!(updated["interest_type"], "meeting_request");

    app.wait_outbox_drained().await;
    let js = app.stream.jetstream().await;
    let events = stream::events(&js, &app.stream.stream).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event_type, EventType::RowCreated);
    assert_eq!(events[0].trigger, Trigger::LeadInterest);
    assert_eq!(events[0].row.as_ref().unwrap().to_json(), row, "the event carries the row as the API shows it");
    assert_eq!(events[1].event_type, EventType::RowUpdated);
    assert_eq!(events[1].row.as_ref().unwrap().to_json(), updated);
    assert!(events[1].changed_fields.contains(&"interest_count".to_owned()));
    assert_eq!(events[1].previous["interest_type"], "positive_reply");

    // Each change went alone, in one statement; /metrics says how the writers wrote: the new lead without a read,
    // the repeat interest in a lead this process wrote read first.
    let metrics = app.api.get("/metrics", None).await.text;
    assert_eq!(metric(&metrics, r#"crm_writer_batches_total{path="unread"}"#), 1.0, "{metrics}");
    assert_eq!(metric(&metrics, r#"crm_writer_batches_total{path="statement"}"#), 1.0, "{metrics}");
    assert_eq!(metric(&metrics, r#"crm_writer_changes_total{path="statement"}"#), 1.0);
    assert_eq!(metric(&metrics, "crm_writer_unread_misses_total"), 0.0);
}

#[tokio::test]
async fn idempotency_key_replays_the_first_response_and_emits_nothing_new() {
    let app = TestApp::spawn().await;
    let (ws, token) = app.workspace_with_token("editor").await;
    let path = format!("/v1/workspaces/{ws}/crm/interest");
    let body = interest_body("grace@example.com");
    let key = [("idempotency-key", "req-123")];
    let first = app.api.send(reqwest::Method::POST, &path, Some(&token), Some(&body), &key).await.expect(201);
    let replay = app.api.send(reqwest::Method::POST, &path, Some(&token), Some(&body), &key).await.expect(201);
    assert_eq!(replay.json(), first.json());
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.headers["etag"], "\"1\"");

    let other = interest_body("someone-else@example.com");
    app.api
        .send(reqwest::Method::POST, &path, Some(&token), Some(&other), &key)
        .await
        .expect_problem(422, Some("Idempotency-Key"));
    let bad_key = [("idempotency-key", "")];
    app.api
        .send(reqwest::Method::POST, &path, Some(&token), Some(&body), &bad_key)
        .await
        .expect_problem(422, Some("Idempotency-Key"));

    // The same key in another workspace is another key.
    let (ws2, token2) = app.workspace_with_token("editor").await;
    let path2 = format!("/v1/workspaces/{ws2}/crm/interest");
    app.api.send(reqwest::Method::POST, &path2, Some(&token2), Some(&body), &key).await.expect(201);

    app.wait_outbox_drained().await;
    let js = app.stream.jetstream().await;
    assert_eq!(stream::message_count(&js, &app.stream.stream).await, 2);
    let rows: i64 = sqlx::query_scalar("SELECT interest_count FROM crm_rows WHERE workspace_id = $1")
        .bind(ws)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn bad_interest_bodies_are_rejected_naming_the_field_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (ws, token) = app.workspace_with_token("editor").await;
    let path = format!("/v1/workspaces/{ws}/crm/interest");
    let cases = [
        (json!({"lead": {"email": "not-an-email"}, "interest": {"type": "reply"}}), "lead.email"),
        (json!({"lead": {"email": "a@b.co", "nickname": "x"}, "interest": {"type": "reply"}}), "lead.nickname"),
        (json!({"lead": {"email": "a@b.co"}, "interest": {"type": "reply"}, "priority": 1}), "priority"),
        (json!({"lead": {"email": "a@b.co"}}), "interest"),
        (json!({"lead": {"email": "a@b.co"}, "interest": {"type": " "}}), "interest.type"),
        (
            json!({"lead": {"email": "a@b.co"}, "interest": {"type": "r", "occurred_at": "yesterday"}}),
            "interest.occurred_at",
        ),
        (
            json!({"lead": {"email": "a@b.co", "linkedin_url": "javascript:alert(1)"}, "interest": {"type": "r"}}),
            "lead.linkedin_url",
        ),
        (json!({"lead": {"email": 42}, "interest": {"type": "r"}}), "lead.email"),
    ];
    for (body, field) in cases {
        app.api.post(&path, Some(&token), &body).await.expect_problem(422, Some(field));
    }
    let malformed = reqwest::Client::new()
        .post(format!("{}{path}", app.api.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"lead\":")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let wrong_type = reqwest::Client::new()
        .post(format!("{}{path}", app.api.base))
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM crm_rows").fetch_one(&app.pool).await.unwrap();
    assert_eq!((rows, app.outbox_len().await), (0, 0));
}

#[tokio::test]
async fn row_routes_check_token_workspace_and_capability() {
    let app = TestApp::spawn().await;
    let (ws, editor) = app.workspace_with_token("editor").await;
    let viewer = app.api.create_token(ws, "viewer").await;
    let (other_ws, other_token) = app.workspace_with_token("admin").await;
    let row = app.api.interest(ws, &editor, "a@example.com").await.expect(201).json();
    let id = row["id"].as_str().unwrap();
    let rows = format!("/v1/workspaces/{ws}/crm/rows");
    let one = format!("/v1/workspaces/{ws}/crm/rows/{id}");
    let interest = format!("/v1/workspaces/{ws}/crm/interest");

    // 401: no token, unknown token.
    app.api.get(&rows, None).await.expect_problem(401, None);
    app.api.get(&rows, Some("crm_unknown")).await.expect_problem(401, None);
    app.api.get(&one, None).await.expect_problem(401, None);
    app.api.patch(&one, None, &json!({"notes": "x"}), &[]).await.expect_problem(401, None);
    app.api.post(&interest, None, &interest_body("b@example.com")).await.expect_problem(401, None);
    // 404: another workspace's token, exactly as a workspace that does not exist.
    app.api.get(&rows, Some(&other_token)).await.expect_problem(404, None);
    app.api.get(&one, Some(&other_token)).await.expect_problem(404, None);
    app.api.patch(&one, Some(&other_token), &json!({"notes": "x"}), &[]).await.expect_problem(404, None);
    app.api.post(&interest, Some(&other_token), &interest_body("b@example.com")).await.expect_problem(404, None);
    app.api
        .get(&format!("/v1/workspaces/{}/crm/rows", uuid::Uuid::now_v7()), Some(&editor))
        .await
        .expect_problem(404, None);
    // A row of another workspace is not found through this one.
    app.api
        .get(&format!("/v1/workspaces/{other_ws}/crm/rows/{id}"), Some(&other_token))
        .await
        .expect_problem(404, None);
    app.api
        .get(&format!("/v1/workspaces/{ws}/crm/rows/{}", uuid::Uuid::now_v7()), Some(&viewer))
        .await
        .expect_problem(404, None);
    app.api.get(&format!("/v1/workspaces/{ws}/crm/rows/nope"), Some(&viewer)).await.expect_problem(404, None);
    // 403: a viewer reads but does not write.
    app.api.get(&rows, Some(&viewer)).await.expect(200);
    app.api.get(&one, Some(&viewer)).await.expect(200);
    app.api.patch(&one, Some(&viewer), &json!({"notes": "x"}), &[]).await.expect_problem(403, None);
    app.api.post(&interest, Some(&viewer), &interest_body("b@example.com")).await.expect_problem(403, None);

    app.wait_outbox_drained().await;
    let js = app.stream.jetstream().await;
    assert_eq!(stream::message_count(&js, &app.stream.stream).await, 1, "rejected requests emitted events");
}

#[tokio::test]
async fn list_is_newest_first_paged_filtered_and_searchable() {
    let app = TestApp::spawn().await;
    let (ws, token) = app.workspace_with_token("editor").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let row = app.api.interest(ws, &token, &format!("lead{i}@example.com")).await.expect(201).json();
        ids.push(row["id"].as_str().unwrap().to_owned());
    }
    let patch = format!("/v1/workspaces/{ws}/crm/rows/{}", ids[1]);
    app.api
        .patch(&patch, Some(&token), &json!({"pipeline_stage": "won", "company": "Zebra Widgets"}), &[])
        .await
        .expect(200);

    let base = format!("/v1/workspaces/{ws}/crm/rows");
    let page1 = app.api.get(&format!("{base}?limit=2"), Some(&token)).await.expect(200).json();
    let got: Vec<&str> = page1["rows"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = app.api.get(&format!("{base}?limit=2&cursor={cursor}"), Some(&token)).await.expect(200).json();
    let got: Vec<&str> = page2["rows"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page2["next_cursor"].as_str().unwrap();
    let page3 = app.api.get(&format!("{base}?limit=2&cursor={cursor}"), Some(&token)).await.expect(200).json();
    assert_eq!(page3["rows"].as_array().unwrap().len(), 1);
    assert!(page3["next_cursor"].is_null());

    let won = app.api.get(&format!("{base}?stage=won"), Some(&token)).await.expect(200).json();
    assert_eq!(won["rows"].as_array().unwrap().len(), 1);
    assert_eq!(won["rows"][0]["id"], ids[1].as_str());
    let zebra = app.api.get(&format!("{base}?q=zebra"), Some(&token)).await.expect(200).json();
    assert_eq!(zebra["rows"].as_array().unwrap().len(), 1);
    let lead3 = app.api.get(&format!("{base}?q=LEAD3"), Some(&token)).await.expect(200).json();
    assert_eq!(lead3["rows"][0]["id"], ids[3].as_str());
    let percent = app.api.get(&format!("{base}?q=%25"), Some(&token)).await.expect(200).json();
    assert_eq!(percent["rows"].as_array().unwrap().len(), 0, "% is a literal, not a wildcard");

    app.api.get(&format!("{base}?stage=closed"), Some(&token)).await.expect_problem(422, Some("stage"));
    app.api.get(&format!("{base}?limit=201"), Some(&token)).await.expect_problem(422, Some("limit"));
    app.api.get(&format!("{base}?cursor=garbage"), Some(&token)).await.expect_problem(422, Some("cursor"));
}

#[tokio::test]
async fn the_first_page_says_how_many_rows_the_filter_matches_in_all() {
    let app = TestApp::spawn().await;
    let (ws, token) = app.workspace_with_token("editor").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let row = app.api.interest(ws, &token, &format!("count{i}@example.com")).await.expect(201).json();
        ids.push(row["id"].as_str().unwrap().to_owned());
    }
    for id in &ids[..3] {
        let path = format!("/v1/workspaces/{ws}/crm/rows/{id}");
        app.api.patch(&path, Some(&token), &json!({"pipeline_stage": "won"}), &[]).await.expect(200);
    }
    let base = format!("/v1/workspaces/{ws}/crm/rows");
    let total = |v: &serde_json::Value| v["total"].clone();
    let first = app.api.get(&format!("{base}?limit=2"), Some(&token)).await.expect(200).json();
    assert_eq!((first["rows"].as_array().unwrap().len(), total(&first)), (2, json!(7)), "2 loaded of 7");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app.api.get(&format!("{base}?limit=2&cursor={cursor}"), Some(&token)).await.expect(200).json();
    assert!(second["total"].is_null(), "later pages do not count again: {second}");
    let won = app.api.get(&format!("{base}?stage=won&limit=1"), Some(&token)).await.expect(200).json();
    assert_eq!(total(&won), json!(3));
    let search = app.api.get(&format!("{base}?q=COUNT1&stage=new"), Some(&token)).await.expect(200).json();
    assert_eq!(total(&search), json!(0), "count1 was moved to won");
    let search = app.api.get(&format!("{base}?q=count6"), Some(&token)).await.expect(200).json();
    assert_eq!(total(&search), json!(1));
    let (other, other_token) = app.workspace_with_token("viewer").await;
    let empty = app.api.get(&format!("/v1/workspaces/{other}/crm/rows"), Some(&other_token)).await.expect(200).json();
    assert_eq!(total(&empty), json!(0), "another workspace's rows are not counted");
}

#[tokio::test]
async fn patch_edits_cells_with_if_match_and_a_no_op_emits_nothing() {
    let app = TestApp::spawn().await;
    let (ws, token) = app.workspace_with_token("editor").await;
    let row = app.api.interest(ws, &token, "edit@example.com").await.expect(201).json();
    let path = format!("/v1/workspaces/{ws}/crm/rows/{}", row["id"].as_str().unwrap());

    let edit = json!({"pipeline_stage": "qualified", "deal_value": "1250.00", "deal_currency": "eur", "custom_fields": {"tier": "gold"}});
    let edited = app.api.patch(&path, Some(&token), &edit, &[("if-match", "\"1\"")]).await.expect(200);
    assert_eq!(edited.headers["etag"], "\"2\"");
    let edited = edited.json();
    assert_eq!((edited["version"].as_i64(), edited["pipeline_stage"].as_str()), (Some(2), Some("qualified")));
    assert_eq!((edited["deal_value"].as_str(), edited["deal_currency"].as_str()), (Some("1250.00"), Some("EUR")));
    assert_eq!(edited["custom_fields"], json!({"tier": "gold"}));

    // The same edit again changes nothing: 200, same version, no event.
    let same = app.api.patch(&path, Some(&token), &edit, &[]).await.expect(200).json();
    assert_eq!(same, edited);
    // A stale If-Match changes nothing.
    let stale = app
        .api
        .patch(&path, Some(&token), &json!({"notes": "late"}), &[("if-match", "\"1\"")])
        .await
        .expect_problem(412, None);
    assert_eq!(stale.json()["current_version"], 2);
    // Merge semantics for custom fields, null clears a clearable field.
    let merged = app
        .api
        .patch(
            &path,
            Some(&token),
            &json!({"custom_fields": {"tier": null, "seats": 5}, "company": null}),
            &[("if-match", "\"2\"")],
        )
        .await
        .expect(200)
        .json();
    assert_eq!(merged["custom_fields"], json!({"seats": 5}));
    assert!(merged["company"].is_null());
    assert_eq!(merged["version"], 3);
    assert_eq!(app.api.row(ws, &token, row["id"].as_str().unwrap()).await.expect(200).json(), merged);

    // Validation: each bad field named, nothing changed.
    for (body, field) in [
        (json!({"pipeline_stage": "closed"}), "pipeline_stage"),
        (json!({"email": "nope"}), "email"),
        (json!({"email": null}), "email"),
        (json!({"deal_value": 12.5}), "deal_value"),
        (json!({"deal_value": "-1"}), "deal_value"),
        (json!({"interest_count": 9}), "interest_count"),
        (json!({"version": 9}), "version"),
        (json!({"next_step_at": "soon"}), "next_step_at"),
    ] {
        app.api.patch(&path, Some(&token), &body, &[]).await.expect_problem(422, Some(field));
    }
    // Another row's email: a conflict on the email field.
    app.api.interest(ws, &token, "taken@example.com").await.expect(201);
    app.api
        .patch(&path, Some(&token), &json!({"email": "TAKEN@example.com"}), &[])
        .await
        .expect_problem(409, Some("email"));

    app.wait_outbox_drained().await;
    let js = app.stream.jetstream().await;
    let events = stream::events(&js, &app.stream.stream).await;
    // created, edit, merge edit, the second row's creation: nothing for the no-op, the stale or the rejected ones.
    assert_eq!(events.len(), 4, "{events:#?}");
    let edit_event = &events[1];
    assert_eq!((edit_event.event_type, edit_event.trigger), (EventType::RowUpdated, Trigger::CrmEdit));
    assert_eq!(edit_event.changed_fields, ["pipeline_stage", "deal_value", "deal_currency", "custom_fields"]);
    assert_eq!(edit_event.previous["pipeline_stage"], "new");
    assert!(edit_event.previous["deal_value"].is_null());
    assert_eq!(edit_event.row.as_ref().unwrap().version, 2);
}

#[tokio::test]
async fn role_is_checked_before_the_body_and_limits_hold() {
    let app = TestApp::spawn().await;
    let (ws, editor) = app.workspace_with_token("editor").await;
    let viewer = app.api.create_token(ws, "viewer").await;
    let row = app.api.interest(ws, &editor, "limits@example.com").await.expect(201).json();
    let path = format!("/v1/workspaces/{ws}/crm/rows/{}", row["id"].as_str().unwrap());
    // A viewer with a bad body learns it lacks the capability, not what is wrong with the body.
    app.api.patch(&path, Some(&viewer), &json!({"pipeline_stage": "closed"}), &[]).await.expect_problem(403, None);
    app.api
        .put(&format!("/v1/workspaces/{ws}/settings/crm-webhook"), Some(&editor), &json!({"nonsense": true}))
        .await
        .expect_problem(403, None);
    // custom_fields is bounded.
    let big: serde_json::Map<String, serde_json::Value> =
        (0..400).map(|i| (format!("key{i}"), json!("x".repeat(40)))).collect();
    app.api
        .patch(&path, Some(&editor), &json!({"custom_fields": big}), &[])
        .await
        .expect_problem(422, Some("custom_fields"));
    // The body size is bounded.
    let huge = json!({"notes": "y".repeat(300 * 1024)});
    let response = app.api.patch(&path, Some(&editor), &huge, &[]).await;
    assert_eq!(response.status, 413, "{}", response.text);
    assert_eq!(app.api.row(ws, &editor, row["id"].as_str().unwrap()).await.expect(200).json()["version"], 1);
}

#[tokio::test]
async fn concurrent_writes_to_one_row_lose_nothing_and_emit_one_event_each() {
    let app = TestApp::spawn().await;
    let (ws, token) = app.workspace_with_token("editor").await;
    let row = app.api.interest(ws, &token, "busy@example.com").await.expect(201).json();
    let path = format!("/v1/workspaces/{ws}/crm/rows/{}", row["id"].as_str().unwrap());
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (api, token, path) = (app.api.clone(), token.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                api.interest(ws, &token, "BUSY@example.com").await.expect(200);
            } else {
                let mut fields = serde_json::Map::new();
                fields.insert(format!("k{i}"), json!(i));
                api.patch(&path, Some(&token), &json!({"custom_fields": fields}), &[]).await.expect(200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let last = app.api.row(ws, &token, row["id"].as_str().unwrap()).await.expect(200).json();
    assert_eq!(last["version"], 21, "every concurrent write applied on top of the one before");
    assert_eq!(last["interest_count"], 11);
    assert_eq!(last["custom_fields"].as_object().unwrap().len(), 10, "no edit lost: {}", last["custom_fields"]);
    app.wait_outbox_drained().await;
    let js = app.stream.jetstream().await;
    let events = stream::events(&js, &app.stream.stream).await;
    assert_eq!(events.len(), 21);
    let mut versions: Vec<i64> = events.iter().map(|e| e.row.as_ref().unwrap().version).collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=21).collect::<Vec<_>>(), "one event per version");
}

/// The one definition of a row (`crm_mapping::FIELDS`) and the table agree: the row is read and written as JSON
/// through the table's record type, so a column without a field (or a field without a column) would be lost or
/// refused. A field added to the row needs its migration, and this fails until it has one.
#[tokio::test]
async fn the_table_has_exactly_the_fields_of_a_row_in_order() {
    let app = TestApp::spawn().await;
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'crm_rows' ORDER BY ordinal_position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(columns, crm_mapping::ROW_FIELDS);
}
