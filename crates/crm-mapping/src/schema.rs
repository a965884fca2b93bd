//! The JSON Schema (draft 2020-12) of a row, derived from [`FIELDS`]: the `$defs` that the event and payload
//! schemas in `proto-schemas/` hold (tested to be equal), and that the OpenAPI document serves.

use crate::row::{Field, Kind, FIELDS};
use crate::PipelineStage;
use serde_json::{json, Map, Value};

/// The definitions a row's schema uses, by name: `uuid`, `row_timestamp`, `pipeline_stage`, `changeable_field`
/// and `crm_row`. References between them are `#/$defs/<name>`; [`row_schema_defs_at`] moves them elsewhere.
pub fn row_schema_defs() -> Map<String, Value> {
    row_schema_defs_at("#/$defs/")
}

/// [`row_schema_defs`] with references pointing to `prefix<name>` (`#/components/schemas/` for OpenAPI).
pub fn row_schema_defs_at(prefix: &str) -> Map<String, Value> {
    let r = |name: &str| json!({ "$ref": format!("{prefix}{name}") });
    let mut properties = Map::new();
    for field in FIELDS {
        properties.insert(field.name.to_owned(), field_schema(field, &r));
    }
    let mut defs = Map::new();
    defs.insert(
        "uuid".into(),
        json!({
            "type": "string",
            "format": "uuid",
            "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            "description": "A UUID in lower-case hyphenated form."
        }),
    );
    defs.insert(
        "row_timestamp".into(),
        json!({
            "type": "string",
            "format": "date-time",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
            "description": "RFC 3339 in UTC with exactly six fractional digits (microseconds), e.g. 2026-11-01T09:30:00.000000Z."
        }),
    );
    defs.insert(
        "pipeline_stage".into(),
        json!({ "type": "string", "enum": PipelineStage::ALL.map(PipelineStage::as_str) }),
    );
    defs.insert(
        "changeable_field".into(),
        json!({
            "type": "string",
            "enum": changeable_fields(),
            "description": "A row field that a change can set: crm_mapping::ROW_FIELDS without the bookkeeping fields."
        }),
    );
    defs.insert(
        "crm_row".into(),
        json!({
            "title": "CrmRow",
            "description": "One lead's line in the CRM sheet (crm_mapping::CrmRow). Every field is always present; empty values are explicit nulls. Properties in sheet column order (crm_mapping::ROW_FIELDS).",
            "type": "object",
            "additionalProperties": false,
            "required": FIELDS.iter().map(|f| f.name).collect::<Vec<_>>(),
            "properties": properties,
        }),
    );
    defs
}

/// The fields a change can set, in column order: what `changed_fields` and `previous` may name.
pub fn changeable_fields() -> Vec<&'static str> {
    FIELDS.iter().filter(|f| !f.is_bookkeeping()).map(|f| f.name).collect()
}

/// The schema of one field's value, as a row carries it.
pub fn field_schema(field: &Field, r: &dyn Fn(&str) -> Value) -> Value {
    let text = |extra: Value| {
        let mut schema = json!({ "type": if field.nullable { json!(["string", "null"]) } else { json!("string") } });
        merge(&mut schema, extra);
        schema
    };
    let timestamp = || {
        if field.nullable {
            json!({ "oneOf": [r("row_timestamp"), { "type": "null" }] })
        } else {
            r("row_timestamp")
        }
    };
    let mut schema = match field.kind {
        Kind::Uuid => r("uuid"),
        Kind::Integer { min } => json!({ "type": "integer", "minimum": min }),
        Kind::Text { max_chars } | Kind::Url { max_chars } => text(json!({ "maxLength": max_chars })),
        Kind::Email => text(json!({ "minLength": 1, "maxLength": 254 })),
        Kind::Stage => r("pipeline_stage"),
        Kind::Decimal => text(json!({ "pattern": DECIMAL_PATTERN })),
        Kind::Currency => text(json!({ "pattern": "^[A-Z]{3}$" })),
        Kind::Timestamp => timestamp(),
        Kind::Object => json!({ "type": "object" }),
    };
    if !field.description.is_empty() {
        merge(&mut schema, json!({ "description": field.description }));
    }
    schema
}

/// A non-negative decimal with at most 15 integer and 4 fractional digits (what the API takes), as
/// [`Kind::Decimal`] takes it.
pub const DECIMAL_PATTERN: &str = "^[0-9]{1,15}(\\.[0-9]{1,4})?$";

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(into), Value::Object(extra)) = (into, extra) {
        into.extend(extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `$defs` a stored schema file holds for the row.
    fn stored_defs(file: &str, text: &str) -> Map<String, Value> {
        let schema: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{file} is JSON: {e}"));
        let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
        defs.into_iter().filter(|(name, _)| row_schema_defs().contains_key(name)).collect()
    }

    #[test]
    fn the_stored_schemas_describe_the_row_exactly_as_the_field_list_does() {
        let expected = row_schema_defs();
        for (file, text) in [
            ("proto-schemas/crm-event.v1.schema.json", include_str!("../../../proto-schemas/crm-event.v1.schema.json")),
            (
                "proto-schemas/crm-webhook-payload.v1.schema.json",
                include_str!("../../../proto-schemas/crm-webhook-payload.v1.schema.json"),
            ),
        ] {
            let stored = stored_defs(file, text);
            for (name, def) in &expected {
                assert_eq!(
                    stored.get(name),
                    Some(def),
                    "{file}: $defs/{name} differs from crm_mapping's field list; it should be\n{}",
                    serde_json::to_string_pretty(def).unwrap_or_default()
                );
            }
        }
    }

    #[test]
    fn a_sample_row_is_valid_against_its_own_field_kinds() {
        let row = crate::tests::sample().to_json();
        let defs = row_schema_defs();
        let properties = defs["crm_row"]["properties"].as_object().unwrap();
        assert_eq!(properties.keys().len(), FIELDS.len());
        for field in FIELDS {
            let value = &row[field.name];
            assert!(field.nullable || !value.is_null(), "{} is null", field.name);
        }
    }
}
