//! One field's value as the row's JSON shows it, and whether two values would show the same, without building the
//! whole row's JSON. `crm_row!` uses it for [`CrmRow::field`](crate::CrmRow::field) and
//! [`CrmRow::changed_fields`](crate::CrmRow::changed_fields): a row change's event lists what changed and its
//! previous values for every update, and the whole row as JSON twice per event was a tenth of crm-api's work.

use crate::PipelineStage;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A field type's JSON value, as [`CrmRow::to_json`](crate::CrmRow::to_json) shows it.
pub trait FieldValue {
    fn to_value(&self) -> Value;
    /// Whether `self` and `other` show as the same JSON value.
    fn shows_as(&self, other: &Self) -> bool;
}

impl FieldValue for Uuid {
    fn to_value(&self) -> Value {
        Value::String(self.to_string())
    }
    fn shows_as(&self, other: &Self) -> bool {
        self == other
    }
}

impl FieldValue for i64 {
    fn to_value(&self) -> Value {
        Value::from(*self)
    }
    fn shows_as(&self, other: &Self) -> bool {
        self == other
    }
}

impl FieldValue for String {
    fn to_value(&self) -> Value {
        Value::String(self.clone())
    }
    fn shows_as(&self, other: &Self) -> bool {
        self == other
    }
}

impl FieldValue for PipelineStage {
    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    fn shows_as(&self, other: &Self) -> bool {
        self == other
    }
}

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

impl FieldValue for Map<String, Value> {
    fn to_value(&self) -> Value {
        Value::Object(self.clone())
    }
    fn shows_as(&self, other: &Self) -> bool {
        self == other
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
