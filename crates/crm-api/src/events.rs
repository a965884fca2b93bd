//! Turning a committed-to-be change into its event, in the same transaction.

use crate::repo::{outbox, rows::Change};
use chrono::Utc;
use crm_events::{EventType, RowChangedEvent, Subjects, Trigger, EVENT_SCHEMA_VERSION};
use sqlx::PgConnection;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Enqueues the event of a row change. A created row is `crm_row.created`; anything else `crm_row.updated`.
pub async fn row_changed(
    tx: &mut PgConnection,
    subjects: &Subjects,
    change: &Change,
    trigger: Trigger,
) -> Result<RowChangedEvent, sqlx::Error> {
    let (changed_fields, previous) = change.diff();
    let event = RowChangedEvent {
        schema_version: EVENT_SCHEMA_VERSION,
        id: Uuid::now_v7(),
        event_type: if change.before.is_none() { EventType::RowCreated } else { EventType::RowUpdated },
        occurred_at: change.after.updated_at,
        workspace_id: change.after.workspace_id,
        trigger,
        row: Some(change.after.clone()),
        changed_fields,
        previous,
    };
    outbox::enqueue(tx, subjects, &event, event.id, &BTreeMap::new()).await?;
    Ok(event)
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
    outbox::enqueue(tx, subjects, &event, event.id, &BTreeMap::new()).await?;
    Ok(event)
}
