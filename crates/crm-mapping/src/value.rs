//! One field's value as the row's JSON shows it, and whether two values would show the same, without building the
//! whole row's JSON. `crm_row!` uses it for [`CrmRow::field`](crate::CrmRow::field) and
//! [`CrmRow::changed_fields`](crate::CrmRow::changed_fields): a row change's event lists what changed and its
//! previous values for every update, and the whole row as JSON twice per event was a tenth of crm-api's work.

use crate::PipelineStage;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// A field type's JSON value, as [`CrmRow::to_json`](crate::CrmRow::to_json) shows it. By default that is the
/// type's own serialisation and equality; timestamps (shown at microseconds) and optional values say otherwise.
pub trait FieldValue: Serialize + PartialEq {
    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    /// Whether `self` and `other` show as the same JSON value.
    fn shows_as(&self, other: &Self) -> bool {
        self == other
    }
}

impl FieldValue for Uuid {}
impl FieldValue for i64 {}
impl FieldValue for String {}
impl FieldValue for PipelineStage {}
impl FieldValue for Map<String, Value> {}

/// Shown at microseconds ([`format_timestamp`](crate::format_timestamp)), so two instants within the same
/// microsecond show as the same.
impl FieldValue for DateTime<Utc> {
    fn to_value(&self) -> Value {
        Value::String(crate::format_timestamp(self))
    }
    fn shows_as(&self, other: &Self) -> bool {
        self.timestamp_micros() == other.timestamp_micros()
    }
}

impl<T: FieldValue> FieldValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, T::to_value)
    }
    fn shows_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Some(a), Some(b)) => a.shows_as(b),
            (None, None) => true,
            _ => false,
        }
    }
}
