//! SQL of bulk recoveries (`recoveries`): creating one with its match count, reading them back, and the walk the
//! background task makes over the delivery log, a batch at a time, in id order.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// A recovery as stored and shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Recovery {
    pub id: Uuid,
    /// `running` while deliveries are being re-queued; `completed` once every matched one has been reached.
    #[schema(value_type = crate::routes::docs::RecoveryStatusSchema)]
    pub status: String,
    /// Deliveries created at or after this are matched.
    #[serde(serialize_with = "crate::json::timestamp")]
    pub since: DateTime<Utc>,
    /// The statuses matched, sorted.
    #[schema(value_type = Vec<String>)]
    pub statuses: Vec<String>,
    /// Deliveries in a matched status when the recovery was created.
    #[schema(minimum = 0)]
    pub matched: i64,
    /// Deliveries re-queued so far: progress is `queued / matched`. A matched delivery that someone redelivered
    /// meanwhile (or that retention pruned) is not queued again, so a completed recovery may have queued fewer.
    #[schema(minimum = 0)]
    pub queued: i64,
    #[serde(serialize_with = "crate::json::timestamp")]
    pub created_at: DateTime<Utc>,
    /// When it completed; null while running.
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    #[schema(required = true)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    #[schema(ignore)]
    pub workspace_id: Uuid,
    /// The last delivery id gone past.
    #[serde(skip)]
    #[schema(ignore)]
    pub walked_past: Uuid,
    /// The newest delivery id it may reach.
    #[serde(skip)]
    #[schema(ignore)]
    pub upto: Uuid,
}

/// A recovery's `status` values (the table's CHECK constraint admits exactly these).
pub const STATUSES: [&str; 2] = ["running", "completed"];

/// The workspace's running recovery, if any.
pub async fn running(db: impl PgExecutor<'_>, workspace_id: Uuid) -> Result<Option<Recovery>, sqlx::Error> {
    sqlx::query_as!(
        Recovery,
        "SELECT id, workspace_id, status, since, statuses, matched, queued, walked_past, upto, created_at, finished_at
           FROM recoveries WHERE workspace_id = $1 AND status = 'running'",
        workspace_id
    )
    .fetch_optional(db)
    .await
}

pub async fn get(db: impl PgExecutor<'_>, workspace_id: Uuid, id: Uuid) -> Result<Option<Recovery>, sqlx::Error> {
    sqlx::query_as!(
        Recovery,
        "SELECT id, workspace_id, status, since, statuses, matched, queued, walked_past, upto, created_at, finished_at
           FROM recoveries WHERE id = $1 AND workspace_id = $2",
        id,
        workspace_id
    )
    .fetch_optional(db)
    .await
}

/// Newest first.
pub async fn list(
    db: impl PgExecutor<'_>,
    workspace_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Recovery>, sqlx::Error> {
    sqlx::query_as!(
        Recovery,
        "SELECT id, workspace_id, status, since, statuses, matched, queued, walked_past, upto, created_at, finished_at
           FROM recoveries WHERE workspace_id = $1 AND ($2::uuid IS NULL OR id < $2)
          ORDER BY id DESC LIMIT $3",
        workspace_id,
        before,
        limit
    )
    .fetch_all(db)
    .await
}

/// Deliveries of the workspace with one of `statuses` and an id in `[from, upto]`: one index range per status.
pub async fn count_matched(
    tx: &mut PgConnection,
    workspace_id: Uuid,
    statuses: &[String],
    from: Uuid,
    upto: Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM deliveries
            WHERE workspace_id = $1 AND status = ANY($2) AND id >= $3 AND id <= $4"#,
        workspace_id,
        statuses,
        from,
        upto
    )
    .fetch_one(tx)
    .await
}

/// What a new recovery is.
pub struct NewRecovery<'a> {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub since: DateTime<Utc>,
    pub statuses: &'a [String],
    pub matched: i64,
    /// The walk starts after this id (the least id of `since`'s millisecond, which no UUIDv7 has) ...
    pub walked_past: Uuid,
    /// ... and ends at this one.
    pub upto: Uuid,
}

/// Creates a running recovery, unless the workspace has one running already (then `None`).
pub async fn create(tx: &mut PgConnection, new: &NewRecovery<'_>) -> Result<Option<Recovery>, sqlx::Error> {
    sqlx::query_as!(
        Recovery,
        "INSERT INTO recoveries (id, workspace_id, since, statuses, status, matched, walked_past, upto)
         VALUES ($1, $2, $3, $4, 'running', $5, $6, $7)
         ON CONFLICT (workspace_id) WHERE status = 'running' DO NOTHING
         RETURNING id, workspace_id, status, since, statuses, matched, queued, walked_past, upto, created_at, finished_at",
        new.id,
        new.workspace_id,
        new.since,
        new.statuses,
        new.matched,
        new.walked_past,
        new.upto
    )
    .fetch_optional(tx)
    .await
}

/// Running recoveries, the one that advanced longest ago first (so recoveries of several workspaces take turns).
pub async fn due(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!("SELECT id FROM recoveries WHERE status = 'running' ORDER BY updated_at LIMIT $1", limit)
        .fetch_all(db)
        .await
}

/// Locks a running recovery for the caller's transaction; `None` when another replica holds it (SKIP LOCKED) or
/// it is no longer running.
pub async fn lock(tx: &mut PgConnection, id: Uuid) -> Result<Option<Recovery>, sqlx::Error> {
    sqlx::query_as!(
        Recovery,
        "SELECT id, workspace_id, status, since, statuses, matched, queued, walked_past, upto, created_at, finished_at
           FROM recoveries WHERE id = $1 AND status = 'running' FOR UPDATE SKIP LOCKED",
        id
    )
    .fetch_optional(tx)
    .await
}

/// The next `limit` deliveries the recovery matches, in id order after where it has got to: in one of its statuses, and
/// unchanged since it was created (a delivery that ended after that, or was redelivered and ended again, is not
/// part of what it matched). Each status is read from its own index range and the ranges are merged, so the
/// deliveries of other statuses in between are never read.
pub async fn next_batch(tx: &mut PgConnection, r: &Recovery, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT d.id AS "id!"
             FROM unnest($2::text[]) AS s(status)
             CROSS JOIN LATERAL (
                 SELECT id FROM deliveries
                  WHERE workspace_id = $1 AND status = s.status AND id > $3 AND id <= $4 AND updated_at <= $5
                  ORDER BY id LIMIT $6) d
            ORDER BY d.id LIMIT $6"#,
        r.workspace_id,
        &r.statuses,
        r.walked_past,
        r.upto,
        r.created_at,
        limit
    )
    .fetch_all(tx)
    .await
}

/// Records a batch: the walk has gone past `walked_past`, and `queued` more deliveries were re-queued.
pub async fn advance(tx: &mut PgConnection, id: Uuid, walked_past: Uuid, queued: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE recoveries SET walked_past = $2, queued = queued + $3, updated_at = now() WHERE id = $1",
        id,
        walked_past,
        queued
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Every matched delivery has been reached.
pub async fn complete(tx: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE recoveries SET status = 'completed', finished_at = now(), updated_at = now() WHERE id = $1",
        id
    )
    .execute(tx)
    .await?;
    Ok(())
}
