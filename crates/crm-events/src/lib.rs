//! The event contract between crm-api and delivery-worker (docs/contract.md §3).
//!
//! Types, subjects, stream and consumer names, and the schema version: everything both sides must agree on, and
//! nothing about how the bytes travel. The crate deliberately has no NATS dependency, so the contract can be read,
//! tested and versioned on its own (`proto-schemas/crm-event.v1.schema.json` is its JSON Schema).

use chrono::{DateTime, Utc};
use crm_mapping::CrmRow;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Version of the event body. A consumer rejects (terms) a message with a version it does not know rather than
/// guessing; see `proto-schemas/README.md` for what may change within a version.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// Default stream name (`CRM_STREAM`).
pub const DEFAULT_STREAM: &str = "CRM_EVENTS";
/// Default subject prefix (`CRM_SUBJECT_PREFIX`).
pub const DEFAULT_SUBJECT_PREFIX: &str = "crm";
/// The one durable pull consumer every worker replica binds.
pub const CONSUMER_NAME: &str = "delivery-worker";

/// What happened to a row (or the test ping). The spelling is the `type` of the webhook payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "crm_row.created")]
    RowCreated,
    #[serde(rename = "crm_row.updated")]
    RowUpdated,
    #[serde(rename = "webhook.test")]
    WebhookTest,
}

impl EventType {
    /// The events a workspace can subscribe to. `webhook.test` is always sent when asked for.
    pub const SUBSCRIBABLE: [EventType; 2] = [EventType::RowCreated, EventType::RowUpdated];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RowCreated => "crm_row.created",
            EventType::RowUpdated => "crm_row.updated",
            EventType::WebhookTest => "webhook.test",
        }
    }

    /// Parses a subscribable event name; `webhook.test` is not one.
    pub fn parse_subscribable(s: &str) -> Option<EventType> {
        EventType::SUBSCRIBABLE.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the row changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The lead-interest upsert of an inbound pipeline.
    LeadInterest,
    /// A cell edit in the sheet.
    CrmEdit,
    /// A test event an admin asked for.
    Test,
}

/// One event on the stream: a row changed (or a test ping). It carries the row snapshot at its version, so every
/// retry sends the same bytes; it never carries a secret.
///
/// Decoding is tolerant of fields it does not know (an additive change within a schema version, published by a
/// newer crm-api during a rolling deploy, must not make an older worker drop events); the JSON Schema in
/// `proto-schemas/` is strict, and tests hold what we publish to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChangedEvent {
    /// Body version, [`EVENT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The event id: the stream's `Nats-Msg-Id`, the webhook id, and the delivery id.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When the row changed (the commit's clock).
    #[serde(deserialize_with = "crm_mapping::timestamp::deserialize")]
    pub occurred_at: DateTime<Utc>,
    pub workspace_id: Uuid,
    pub trigger: Trigger,
    /// The row at this version; `None` only for `webhook.test`.
    pub row: Option<CrmRow>,
    /// Names of the fields this change set, in column order; empty for a created row and for a test.
    pub changed_fields: Vec<String>,
    /// The previous value of each changed field.
    pub previous: serde_json::Map<String, serde_json::Value>,
}

impl RowChangedEvent {
    /// A `webhook.test` event of a workspace (no row), as the test route queues it.
    pub fn webhook_test(workspace_id: Uuid) -> Self {
        RowChangedEvent {
            schema_version: EVENT_SCHEMA_VERSION,
            id: Uuid::now_v7(),
            event_type: EventType::WebhookTest,
            occurred_at: Utc::now(),
            workspace_id,
            trigger: Trigger::Test,
            row: None,
            changed_fields: Vec::new(),
            previous: serde_json::Map::new(),
        }
    }

    /// Serialises the event body. Plain data with string keys: this cannot fail.
    pub fn to_bytes(&self) -> Vec<u8> {
        crm_mapping::json_bytes(self)
    }

    /// The webhook body for this event (docs/contract.md §4), built by crm-mapping.
    pub fn to_payload(&self) -> Vec<u8> {
        crm_mapping::build_payload(&crm_mapping::PayloadSource {
            id: self.id,
            event_type: self.event_type.as_str(),
            occurred_at: self.occurred_at,
            workspace_id: self.workspace_id,
            trigger: match self.trigger {
                Trigger::LeadInterest => "lead_interest",
                Trigger::CrmEdit => "crm_edit",
                Trigger::Test => "test",
            },
            row: self.row.as_ref(),
            changed_fields: &self.changed_fields,
            previous: &self.previous,
        })
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let version: Version = serde_json::from_slice(bytes).map_err(DecodeError::Malformed)?;
        if version.schema_version != EVENT_SCHEMA_VERSION {
            return Err(DecodeError::UnknownVersion(version.schema_version));
        }
        serde_json::from_slice(bytes).map_err(DecodeError::Malformed)
    }
}

/// Why a message body is not an event this build understands. Both are terminal for the consumer.
#[derive(Debug)]
pub enum DecodeError {
    Malformed(serde_json::Error),
    UnknownVersion(u32),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed(e) => write!(f, "malformed event body: {e}"),
            DecodeError::UnknownVersion(v) => write!(f, "unknown event schema_version {v}"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Malformed(e) => Some(e),
            DecodeError::UnknownVersion(_) => None,
        }
    }
}

/// Subject naming under one prefix (`CRM_SUBJECT_PREFIX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(prefix: impl Into<String>) -> Self {
        Subjects { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>.row.changed.<workspace_id>`: one subject per workspace, so per-workspace filtering and lag are
    /// possible without reading bodies.
    pub fn row_changed(&self, workspace_id: Uuid) -> String {
        format!("{}.row.changed.{workspace_id}", self.prefix)
    }

    /// The stream's subject filter.
    pub fn all_row_changed(&self) -> String {
        format!("{}.row.changed.*", self.prefix)
    }

    /// The workspace id of a row-changed subject, if it is one of ours.
    pub fn workspace_of(&self, subject: &str) -> Option<Uuid> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".row.changed.")?;
        Uuid::parse_str(rest).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_event() -> RowChangedEvent {
        RowChangedEvent::webhook_test(Uuid::now_v7())
    }

    #[test]
    fn event_round_trips_and_spells_its_type() {
        let event = test_event();
        let bytes = event.to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["type"], "webhook.test");
        assert_eq!(json["trigger"], "test");
        assert_eq!(RowChangedEvent::from_slice(&bytes).unwrap(), event);
    }

    #[test]
    fn unknown_version_is_refused_not_guessed() {
        let mut json = serde_json::to_value(test_event()).unwrap();
        json["schema_version"] = 2.into();
        let err = RowChangedEvent::from_slice(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(matches!(err, DecodeError::UnknownVersion(2)));
    }

    #[test]
    fn subjects_are_per_workspace_under_the_prefix() {
        let subjects = Subjects::new("t1");
        let ws = Uuid::now_v7();
        let subject = subjects.row_changed(ws);
        assert_eq!(subject, format!("t1.row.changed.{ws}"));
        assert_eq!(subjects.workspace_of(&subject), Some(ws));
        assert_eq!(subjects.workspace_of("t2.row.changed.x"), None);
        assert_eq!(subjects.all_row_changed(), "t1.row.changed.*");
    }

    #[test]
    fn only_row_events_are_subscribable() {
        assert_eq!(EventType::parse_subscribable("crm_row.updated"), Some(EventType::RowUpdated));
        assert_eq!(EventType::parse_subscribable("webhook.test"), None);
    }
}
