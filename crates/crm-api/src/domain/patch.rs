//! The sheet's cell edit: a `PATCH` body is an object of editable fields to set, checked field by field against
//! the row's field list, and applied to a row to give the row it would leave.
//!
//! Each field is absent (unchanged), `null` (cleared, where the field may be empty) or a value. `custom_fields`
//! merges (RFC 7386): a key set to `null` is removed, other keys are set. Identity, bookkeeping and the interest
//! fields are not editable.

use super::input::{field_value, merged_custom_fields, Validator};
use crate::error::ApiError;
use crm_mapping::{CrmRow, Field, Kind};
use serde_json::{Map, Value};

/// A checked edit: the fields it sets, in the order given, with their values in the row's JSON spelling.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowPatch {
    changes: Vec<(&'static Field, Value)>,
}

impl RowPatch {
    /// Checks a `PATCH` body, reporting every bad field at once, in column order (unknown names last).
    pub fn parse(mut body: Map<String, Value>) -> Result<RowPatch, ApiError> {
        let mut v = Validator::default();
        let mut changes = Vec::with_capacity(body.len());
        for field in crm_mapping::FIELDS {
            let Some(raw) = body.remove(field.name) else { continue };
            if !field.editable() {
                v.error(field.name, "is not editable");
            } else if let Some(value) = v.check(field.name, field_value(field, raw)) {
                changes.push((field, value));
            }
        }
        for name in body.keys() {
            v.error(name.clone(), "unknown field");
        }
        v.finish()?;
        Ok(RowPatch { changes })
    }

    /// The row as the edit would leave it, bookkeeping untouched: equal to `row` exactly when the edit is a no-op.
    /// `Err((field, why))` when the merged row would break a cap.
    pub fn apply(&self, row: &CrmRow) -> Result<CrmRow, (&'static str, String)> {
        let mut next = row.clone();
        for (field, value) in &self.changes {
            let value = match (field.kind, value) {
                (Kind::Object, Value::Object(merge)) => {
                    let mut merged = match row.field(field.name) {
                        Some(Value::Object(current)) => current,
                        _ => Map::new(),
                    };
                    for (key, value) in merge {
                        if value.is_null() {
                            merged.remove(key);
                        } else {
                            merged.insert(key.clone(), value.clone());
                        }
                    }
                    merged_custom_fields(&merged).map_err(|message| (field.name, message))?;
                    Value::Object(merged)
                }
                _ => value.clone(),
            };
            // The value was checked against the field's kind, which is what its Rust type holds.
            next.set(field.name, value).map_err(|e| (field.name, e.to_string()))?;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use uuid::Uuid;

    fn row() -> CrmRow {
        CrmRow::blank(Uuid::now_v7(), Uuid::now_v7(), "ada@example.com".into(), Utc::now())
    }

    fn parse(body: Value) -> Result<RowPatch, ApiError> {
        RowPatch::parse(body.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn patch_collects_every_bad_field() {
        let body = serde_json::json!({
            "email": "nope", "pipeline_stage": "closed", "deal_value": "-3", "next_step_at": "tomorrow",
            "version": 7, "nickname": "x"
        });
        let ApiError::Validation(errors) = parse(body).unwrap_err() else { panic!("expected validation") };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["version", "email", "pipeline_stage", "deal_value", "next_step_at", "nickname"]);
    }

    #[test]
    fn patch_tells_null_from_absent_and_a_no_op_is_equal() {
        let mut before = row();
        before.owner = Some("Grace".into());
        before.notes = Some("keep".into());
        let after = parse(serde_json::json!({"owner": null})).unwrap().apply(&before).unwrap();
        assert_eq!(after.owner, None);
        assert_eq!(after.notes.as_deref(), Some("keep"));
        let same = parse(serde_json::json!({"notes": " keep "})).unwrap().apply(&before).unwrap();
        assert_eq!(same, before);
    }

    #[test]
    fn custom_fields_merge_and_the_merged_row_is_capped() {
        let mut before = row();
        before.custom_fields.insert("tier".into(), "gold".into());
        let after = parse(serde_json::json!({"custom_fields": {"tier": null, "source": "fair"}}))
            .unwrap()
            .apply(&before)
            .unwrap();
        assert_eq!(Value::Object(after.custom_fields), serde_json::json!({"source": "fair"}));
        let big = |i: usize| serde_json::json!({ "custom_fields": { format!("k{i}"): "x".repeat(4000) } });
        let mut grown = before;
        for i in 0..4 {
            grown = parse(big(i)).unwrap().apply(&grown).unwrap();
        }
        assert_eq!(parse(big(9)).unwrap().apply(&grown).unwrap_err().0, "custom_fields");
    }
}
