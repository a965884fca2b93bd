//! The outbound webhook payload (docs/contract.md §4), built from a row snapshot.
//!
//! The payload is a function of the event alone, so every attempt and every redelivery of one event sends the same
//! body; only the signature headers, which include the send time, change between attempts.

use crate::CrmRow;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// The `api_version` every payload carries. It changes only with a breaking change of this shape.
pub const API_VERSION: &str = "2026-11-01";

/// What a payload is built from. Types and triggers are their wire spellings, so this crate stays independent of
/// the event contract that depends on it.
#[derive(Debug, Clone, Copy)]
pub struct PayloadSource<'a> {
    pub id: Uuid,
    pub event_type: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub workspace_id: Uuid,
    pub trigger: &'a str,
    pub row: Option<&'a CrmRow>,
    pub changed_fields: &'a [String],
    pub previous: &'a Map<String, Value>,
}

#[derive(Serialize)]
struct Payload<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    api_version: &'static str,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    occurred_at: DateTime<Utc>,
    workspace_id: Uuid,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    trigger: &'a str,
    row: Option<&'a CrmRow>,
    changed_fields: &'a [String],
    previous: &'a Map<String, Value>,
}

/// The body of the webhook request, as bytes: what is signed is exactly what is sent.
pub fn build_payload(source: &PayloadSource<'_>) -> Vec<u8> {
    let payload = Payload {
        id: source.id,
        event_type: source.event_type,
        api_version: API_VERSION,
        occurred_at: source.occurred_at,
        workspace_id: source.workspace_id,
        data: Data {
            trigger: source.trigger,
            row: source.row,
            changed_fields: source.changed_fields,
            previous: source.previous,
        },
    };
    crate::json_bytes(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_contract_shape_and_the_row_as_mapped() {
        let row = crate::tests::sample();
        let previous: Map<String, Value> = [("pipeline_stage".to_owned(), Value::from("new"))].into_iter().collect();
        let changed = vec!["pipeline_stage".to_owned()];
        let id = Uuid::now_v7();
        let bytes = build_payload(&PayloadSource {
            id,
            event_type: "crm_row.updated",
            occurred_at: row.updated_at,
            workspace_id: row.workspace_id,
            trigger: "crm_edit",
            row: Some(&row),
            changed_fields: &changed,
            previous: &previous,
        });
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["id"], id.to_string());
        assert_eq!(v["type"], "crm_row.updated");
        assert_eq!(v["api_version"], API_VERSION);
        assert_eq!(v["occurred_at"], "2026-11-01T09:30:00.000000Z");
        assert_eq!(v["data"]["trigger"], "crm_edit");
        assert_eq!(v["data"]["row"], row.to_json());
        assert_eq!(v["data"]["changed_fields"], serde_json::json!(["pipeline_stage"]));
        assert_eq!(v["data"]["previous"], serde_json::json!({"pipeline_stage": "new"}));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6);
    }
}
