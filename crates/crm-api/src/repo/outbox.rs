//! The outbox table: enqueue in the caller's transaction; claim, publish and delete in the relay's.

use crm_events::{RowChangedEvent, Subjects};
use sqlx::{PgConnection, Row};
use std::collections::BTreeMap;
use uuid::Uuid;

/// One event waiting to be published.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: i64,
    pub msg_id: Uuid,
    pub subject: String,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Adds `event` to the outbox inside the caller's transaction, so it commits (or not) with the change it describes.
#[tracing::instrument(skip_all, fields(event_id = %event.id, workspace_id = %event.workspace_id))]
pub async fn enqueue(
    tx: &mut PgConnection,
    subjects: &Subjects,
    event: &RowChangedEvent,
    msg_id: Uuid,
    headers: &BTreeMap<String, String>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (msg_id, subject, payload, headers) VALUES ($1, $2, $3, $4)")
        .bind(msg_id)
        .bind(subjects.row_changed(event.workspace_id))
        .bind(event.to_bytes())
        .bind(sqlx::types::Json(headers))
        .execute(tx)
        .await?;
    Ok(())
}

/// Takes up to `limit` unpublished events, oldest first, skipping rows another relay holds: they are deleted
/// in the caller's transaction and come back if it rolls back (a failed publish, a crash), so taking them and
/// marking them sent is one statement. Committing the transaction is the mark.
pub async fn take(tx: &mut PgConnection, limit: i64) -> Result<Vec<Pending>, sqlx::Error> {
    let rows = sqlx::query(
        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING seq, msg_id, subject, payload, headers, created_at",
    )
    .bind(limit)
    .fetch_all(tx)
    .await?;
    let mut pending: Vec<Pending> = rows
        .into_iter()
        .map(|r| Pending {
            seq: r.get("seq"),
            msg_id: r.get("msg_id"),
            subject: r.get("subject"),
            payload: r.get("payload"),
            headers: r.get::<sqlx::types::Json<BTreeMap<String, String>>, _>("headers").0,
            created_at: r.get("created_at"),
        })
        .collect();
    // RETURNING does not promise an order; publish in commit order.
    pending.sort_unstable_by_key(|p| p.seq);
    Ok(pending)
}

/// Events not yet published (the `crm_outbox_backlog` gauge).
pub async fn backlog(db: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(db).await
}
