//! The delivery log, as crm-api reads it, and the redeliver request. The worker writes the log; crm-api creates
//! a delivery only for a test event (so its id can be looked up at once) and re-opens one for a redelivery.

use chrono::{DateTime, Utc};
use crm_db::DeliveryStatus;
use crm_events::{RowChangedEvent, Subjects};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, Row};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub event_type: String,
    pub row_id: Option<Uuid>,
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::json::timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    pub delivered_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Attempt {
    pub attempt: i32,
    #[serde(serialize_with = "crate::json::timestamp")]
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

const COLUMNS: &str =
    "id, event_type, row_id, status, attempts, last_status_code, last_error, created_at, delivered_at, next_attempt_at";

/// Newest first; ids are event ids (UUIDv7), so id order is creation order.
pub async fn list(
    db: impl PgExecutor<'_>,
    workspace_id: Uuid,
    status: Option<DeliveryStatus>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deliveries
          WHERE workspace_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR id < $3)
          ORDER BY id DESC LIMIT $4"
    );
    sqlx::query_as(&sql)
        .bind(workspace_id)
        .bind(status.map(DeliveryStatus::as_str))
        .bind(before)
        .bind(limit)
        .fetch_all(db)
        .await
}

pub async fn get(
    db: &mut PgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<Option<(Delivery, Vec<Attempt>)>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM deliveries WHERE id = $1 AND workspace_id = $2");
    let Some(delivery): Option<Delivery> =
        sqlx::query_as(&sql).bind(id).bind(workspace_id).fetch_optional(&mut *db).await?
    else {
        return Ok(None);
    };
    let attempts = sqlx::query_as(
        "SELECT attempt, started_at, duration_ms, status_code, error, response_excerpt
           FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
    )
    .bind(id)
    .fetch_all(&mut *db)
    .await?;
    Ok(Some((delivery, attempts)))
}

/// Records a delivery as pending when its event is committed (test events), so it can be looked up at once.
pub async fn create_pending(tx: &mut PgConnection, event: &RowChangedEvent) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO deliveries (id, workspace_id, event_type, row_id, status, event)
         VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(event.id)
    .bind(event.workspace_id)
    .bind(event.event_type.as_str())
    .bind(event.row.as_ref().map(|r| r.id))
    .bind(event.to_bytes())
    .execute(tx)
    .await?;
    Ok(())
}

pub enum RedeliverOutcome {
    NotFound,
    InProgress,
    Queued,
}

/// Re-opens an ended delivery and queues its event again, with a fresh stream message id (the event id would be
/// dropped by the stream's duplicate window) and the same body, so the receiver sees the same webhook id and the
/// attempt numbers go on. The retry budget starts afresh from the current attempt count.
pub async fn redeliver(
    tx: &mut PgConnection,
    subjects: &Subjects,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<RedeliverOutcome, sqlx::Error> {
    let row = sqlx::query("SELECT status, event FROM deliveries WHERE id = $1 AND workspace_id = $2 FOR UPDATE")
        .bind(id)
        .bind(workspace_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(RedeliverOutcome::NotFound) };
    let status: String = row.get("status");
    if status.parse::<DeliveryStatus>().is_ok_and(|s| !s.has_ended()) {
        return Ok(RedeliverOutcome::InProgress);
    }
    let event: Vec<u8> = row.get("event");
    let msg_id = Uuid::now_v7();
    sqlx::query(
        "UPDATE deliveries SET status = 'pending', redelivery_id = $2, next_attempt_at = NULL, lease_until = NULL,
                budget_start = attempts, updated_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .bind(msg_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO outbox (msg_id, subject, payload, headers) VALUES ($1, $2, $3, $4)")
        .bind(msg_id)
        .bind(subjects.row_changed(workspace_id))
        .bind(event)
        .bind(sqlx::types::Json(service_common::trace::current_headers()))
        .execute(&mut *tx)
        .await?;
    Ok(RedeliverOutcome::Queued)
}
