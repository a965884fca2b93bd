//! SQL of the delivery log, as crm-api reads it, and what crm-api writes to it: the pending delivery of every event,
//! created in the event's own transaction (so its id can be looked up at once, and the worker only claims it), and
//! the re-opening of ended deliveries for a redelivery or a recovery. The worker writes the attempts and the
//! outcomes.

use chrono::{DateTime, Utc};
use crm_db::DeliveryStatus;
use crm_events::RowChangedEvent;
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// One delivery of an event to the workspace's webhook, as the delivery log lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// The event id: also the webhook id (`webhook-id`, `x-crm-webhook-id`) the receiver sees, the same on every
    /// attempt and redelivery.
    pub id: Uuid,
    #[schema(value_type = crate::routes::docs::EventTypeSchema)]
    pub event_type: String,
    /// The row the event is about; null for a test event.
    #[schema(required = true)]
    pub row_id: Option<Uuid>,
    #[schema(value_type = crate::routes::docs::DeliveryStatusSchema)]
    pub status: String,
    /// Attempts made. Hand-backs that are not attempts (held back, shutdown) are not counted.
    #[schema(minimum = 0)]
    pub attempts: i32,
    #[schema(required = true)]
    pub last_status_code: Option<i32>,
    /// Why the last attempt did not succeed (e.g. `HTTP 503`, `timeout after 10000 ms`, `egress: ...`), or why the
    /// delivery was skipped.
    #[schema(required = true)]
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::json::timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    #[schema(required = true)]
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the next attempt is due, while `retrying`.
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// One attempt to deliver.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = DeliveryAttempt)]
pub struct Attempt {
    /// 1, 2, 3, …: the `x-crm-webhook-attempt` header the receiver saw; it continues across a redelivery.
    #[schema(minimum = 1)]
    pub attempt: i32,
    #[serde(serialize_with = "crate::json::timestamp")]
    pub started_at: DateTime<Utc>,
    #[schema(minimum = 0)]
    pub duration_ms: i32,
    /// Null when no answer came (timeout, network error, blocked target).
    #[schema(required = true)]
    pub status_code: Option<i32>,
    #[schema(required = true)]
    pub error: Option<String>,
    /// At most the first 1 KiB of the response body, decoded as UTF-8 (invalid bytes replaced).
    #[schema(required = true, max_length = 1024)]
    pub response_excerpt: Option<String>,
}

/// Newest first; ids are event ids (UUIDv7), so id order is creation order.
pub async fn list(
    db: impl PgExecutor<'_>,
    workspace_id: Uuid,
    status: Option<DeliveryStatus>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as!(
        Delivery,
        "SELECT id, event_type, row_id, status, attempts, last_status_code, last_error, created_at, delivered_at,
                next_attempt_at
           FROM deliveries
          WHERE workspace_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR id < $3)
          ORDER BY id DESC LIMIT $4",
        workspace_id,
        status.map(DeliveryStatus::as_str),
        before,
        limit
    )
    .fetch_all(db)
    .await
}

/// One delivery with its attempts, in order.
pub async fn get(
    db: &mut PgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<Option<(Delivery, Vec<Attempt>)>, sqlx::Error> {
    let delivery = sqlx::query_as!(
        Delivery,
        "SELECT id, event_type, row_id, status, attempts, last_status_code, last_error, created_at, delivered_at,
                next_attempt_at
           FROM deliveries WHERE id = $1 AND workspace_id = $2",
        id,
        workspace_id
    )
    .fetch_optional(&mut *db)
    .await?;
    let Some(delivery) = delivery else { return Ok(None) };
    let attempts = sqlx::query_as!(
        Attempt,
        "SELECT attempt, started_at, duration_ms, status_code, error, response_excerpt
           FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
        id
    )
    .fetch_all(&mut *db)
    .await?;
    Ok(Some((delivery, attempts)))
}

/// A delivery's stored event, as it was published.
pub async fn event(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar!("SELECT event FROM deliveries WHERE id = $1", id).fetch_optional(db).await
}

/// Records a delivery as pending when its event is committed (test events), so it can be looked up at once.
pub async fn create_pending(conn: &mut PgConnection, event: &RowChangedEvent) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO deliveries (id, workspace_id, event_type, row_id, status, event)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        event.id,
        event.workspace_id,
        event.event_type.as_str(),
        event.row.as_ref().map(|r| r.id),
        DeliveryStatus::Pending.as_str(),
        event.to_bytes()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the deliveries of events as pending when the events are committed, many in one statement: the worker
/// then finds each delivery there and its first touch of the database is an update.
pub async fn create_pending_many(
    conn: &mut PgConnection,
    events: &[(&RowChangedEvent, &[u8])],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|(e, _)| e.id).collect();
    let workspaces: Vec<Uuid> = events.iter().map(|(e, _)| e.workspace_id).collect();
    let types: Vec<&str> = events.iter().map(|(e, _)| e.event_type.as_str()).collect();
    let rows: Vec<Option<Uuid>> = events.iter().map(|(e, _)| e.row.as_ref().map(|r| r.id)).collect();
    let bodies: Vec<&[u8]> = events.iter().map(|(_, body)| *body).collect();
    sqlx::query!(
        "INSERT INTO deliveries (id, workspace_id, event_type, row_id, status, event)
         SELECT id, ws, ty, row_id, $6, event
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::bytea[]) AS t(id, ws, ty, row_id, event)
         ON CONFLICT (id) DO NOTHING",
        &ids,
        &workspaces,
        &types as &[&str],
        &rows as &[Option<Uuid>],
        &bodies as &[&[u8]],
        DeliveryStatus::Pending.as_str()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A delivery's status, locked for the caller's transaction.
pub async fn lock(tx: &mut PgConnection, workspace_id: Uuid, id: Uuid) -> Result<Option<DeliveryStatus>, sqlx::Error> {
    let status = sqlx::query_scalar!(
        "SELECT status FROM deliveries WHERE id = $1 AND workspace_id = $2 FOR UPDATE",
        id,
        workspace_id
    )
    .fetch_optional(tx)
    .await?;
    // The table's CHECK constraint admits only known statuses.
    Ok(status.map(|s| s.parse().unwrap_or(DeliveryStatus::Pending)))
}

/// Re-opens ended deliveries of a workspace, many in one statement: pending again, each one's retry budget starting
/// afresh from the attempts made so far. Only those whose status is one of `statuses`, and, with `unchanged_since`,
/// last updated no later than that, are re-opened (the row lock the update takes makes that check exact against a
/// concurrent redelivery). Returns the ids re-opened.
pub async fn reopen(
    tx: &mut PgConnection,
    workspace_id: Uuid,
    ids: &[Uuid],
    statuses: &[&str],
    unchanged_since: Option<DateTime<Utc>>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE deliveries SET status = $5, next_attempt_at = NULL, lease_until = NULL, budget_start = attempts,
                updated_at = now()
          WHERE workspace_id = $1 AND id = ANY($2) AND status = ANY($3)
            AND ($4::timestamptz IS NULL OR updated_at <= $4)
          RETURNING id",
        workspace_id,
        ids,
        statuses as &[&str],
        unchanged_since,
        DeliveryStatus::Pending.as_str()
    )
    .fetch_all(tx)
    .await
}

/// Whether the workspace has at least `n` deliveries waiting for their first attempt: a recovery holds back while
/// it does, so the endpoint works through what is queued (live events among it) before more is added.
pub async fn pending_at_least(db: impl PgExecutor<'_>, workspace_id: Uuid, n: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) >= $2 AS "enough!"
             FROM (SELECT 1 FROM deliveries WHERE workspace_id = $1 AND status = 'pending' LIMIT $2) p"#,
        workspace_id,
        n
    )
    .fetch_one(db)
    .await
}
