//! A row change and the event that announces it, and the `If-Match`/`ETag` rules of the row's versions.

use crm_events::{EventType, RowChangedEvent, Trigger, EVENT_SCHEMA_VERSION};
use crm_mapping::CrmRow;
use serde_json::{Map, Value};
use uuid::Uuid;

/// A row before and after an effective change; `before` is `None` for a new row.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub before: Option<CrmRow>,
    pub after: CrmRow,
}

impl Change {
    /// The fields whose values differ, in column order, with their previous values. Bookkeeping fields (version,
    /// updated_at) always move with a change and are not listed.
    pub fn diff(&self) -> (Vec<String>, Map<String, Value>) {
        let Some(before) = &self.before else {
            return (Vec::new(), Map::new());
        };
        let mut changed = Vec::new();
        let mut previous = Map::new();
        for field in before.changed_fields(&self.after).filter(|f| !f.is_bookkeeping()) {
            changed.push(field.name.to_owned());
            previous.insert(field.name.to_owned(), before.field(field.name).unwrap_or(Value::Null));
        }
        (changed, previous)
    }

    /// The event of this change: `crm_row.created` for a new row, `crm_row.updated` otherwise. Its id is the
    /// stream's message id, the delivery id and the webhook id.
    pub fn event(&self, trigger: Trigger) -> RowChangedEvent {
        let (changed_fields, previous) = self.diff();
        RowChangedEvent {
            schema_version: EVENT_SCHEMA_VERSION,
            id: Uuid::now_v7(),
            event_type: if self.before.is_none() { EventType::RowCreated } else { EventType::RowUpdated },
            occurred_at: self.after.updated_at,
            workspace_id: self.after.workspace_id,
            trigger,
            row: Some(self.after.clone()),
            changed_fields,
            previous,
        }
    }
}

/// A parsed `If-Match` header: `*`, or a list of entity tags `"<version>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Versions(Vec<i64>),
}

impl IfMatch {
    /// Parses the header. Weak tags never match (RFC 9110 §13.1.1 uses strong comparison), and a tag that is not
    /// one of our versions matches nothing, so a malformed header fails the precondition rather than being ignored.
    pub fn parse(raw: &str) -> IfMatch {
        if raw.trim() == "*" {
            return IfMatch::Any;
        }
        IfMatch::Versions(
            raw.split(',').filter_map(|tag| tag.trim().strip_prefix('"')?.strip_suffix('"')?.parse().ok()).collect(),
        )
    }

    pub fn matches(&self, version: i64) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Versions(versions) => versions.contains(&version),
        }
    }
}

/// The `ETag` of a row at `version`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn if_match_uses_strong_comparison() {
        assert!(IfMatch::parse("\"3\"").matches(3));
        assert!(IfMatch::parse("\"2\", \"3\"").matches(3));
        assert!(!IfMatch::parse("\"2\"").matches(3));
        assert!(!IfMatch::parse("W/\"3\"").matches(3));
        assert!(!IfMatch::parse("3").matches(3));
        assert!(IfMatch::parse("*").matches(42));
    }

    #[test]
    fn a_change_lists_what_moved_and_its_event_carries_the_new_row() {
        let before = CrmRow::blank(Uuid::now_v7(), Uuid::now_v7(), "ada@example.com".into(), Utc::now());
        let mut after = before.clone();
        after.owner = Some("Grace".into());
        after.version = 2;
        after.updated_at = Utc::now();
        let change = Change { before: Some(before), after: after.clone() };
        let event = change.event(Trigger::CrmEdit);
        assert_eq!(event.event_type, EventType::RowUpdated);
        assert_eq!(event.changed_fields, ["owner"]);
        assert_eq!(event.previous.get("owner"), Some(&Value::Null));
        assert_eq!(event.row, Some(after.clone()));
        let created = Change { before: None, after }.event(Trigger::LeadInterest);
        assert_eq!((created.event_type, created.changed_fields.len()), (EventType::RowCreated, 0));
    }
}
