//! The events of row changes and test pings. Row-change events are written by the row writes themselves
//! ([`crate::repo::rows`]), in the same statement as the change.

use crate::repo::{outbox, rows::Change};
use chrono::Utc;
use crm_events::{EventType, RowChangedEvent, Subjects, Trigger, EVENT_SCHEMA_VERSION};
use sqlx::PgConnection;
use uuid::Uuid;

/// The event of a row change: `crm_row.created` for a new row, `crm_row.updated` otherwise. Its id is both the
/// stream's message id and the webhook id.
pub fn for_change(change: &Change, trigger: Trigger) -> RowChangedEvent {
    let (changed_fields, previous) = change.diff();
    RowChangedEvent {
        schema_version: EVENT_SCHEMA_VERSION,
        id: Uuid::now_v7(),
        event_type: if change.before.is_none() { EventType::RowCreated } else { EventType::RowUpdated },
        occurred_at: change.after.updated_at,
        workspace_id: change.after.workspace_id,
        trigger,
        row: Some(change.after.clone()),
        changed_fields,
        previous,
    }
}

/// Enqueues a `webhook.test` event for a workspace.
pub async fn test_event(
    tx: &mut PgConnection,
    subjects: &Subjects,
    workspace_id: Uuid,
) -> Result<RowChangedEvent, sqlx::Error> {
    let event = RowChangedEvent {
        schema_version: EVENT_SCHEMA_VERSION,
        id: Uuid::now_v7(),
        event_type: EventType::WebhookTest,
        occurred_at: Utc::now(),
        workspace_id,
        trigger: Trigger::Test,
        row: None,
        changed_fields: Vec::new(),
        previous: Default::default(),
    };
    outbox::enqueue(tx, subjects, &event, event.id, &service_common::trace::current_headers()).await?;
    Ok(event)
}
