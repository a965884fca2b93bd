//! The outbox table: enqueue in the caller's transaction; claim, publish and delete in the relay's. Events the
//! relay cannot publish are parked (`outbox_parked`) with their reason until an operator re-drives them.

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

/// Sets events aside, in the relay's transaction (they were taken out of the outbox in it), with why.
pub async fn park(tx: &mut PgConnection, parked: &[(&Pending, String)]) -> Result<(), sqlx::Error> {
    for (p, reason) in parked {
        sqlx::query(
            "INSERT INTO outbox_parked (seq, msg_id, subject, payload, headers, created_at, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (seq) DO UPDATE SET reason = EXCLUDED.reason,
             parked_at = now()",
        )
        .bind(p.seq)
        .bind(p.msg_id)
        .bind(&p.subject)
        .bind(&p.payload)
        .bind(sqlx::types::Json(&p.headers))
        .bind(p.created_at)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// A parked event, as the operator route shows it (never its payload: it carries a person's row).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Parked {
    pub seq: i64,
    pub msg_id: Uuid,
    pub subject: String,
    pub size_bytes: i32,
    pub reason: String,
    #[serde(serialize_with = "crate::json::timestamp")]
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "crate::json::timestamp")]
    pub parked_at: chrono::DateTime<chrono::Utc>,
}

/// Parked events, oldest first, after `after_seq`.
pub async fn list_parked(db: &sqlx::PgPool, after_seq: i64, limit: i64) -> Result<Vec<Parked>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, msg_id, subject, octet_length(payload) AS size_bytes, reason, created_at, parked_at
           FROM outbox_parked WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after_seq)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Parked {
            seq: r.get("seq"),
            msg_id: r.get("msg_id"),
            subject: r.get("subject"),
            size_bytes: r.get("size_bytes"),
            reason: r.get("reason"),
            created_at: r.get("created_at"),
            parked_at: r.get("parked_at"),
        })
        .collect())
}

/// Puts a parked event back into the outbox (at the end of the queue) for the relay to try again. Returns
/// whether it was parked.
pub async fn redrive(db: &sqlx::PgPool, seq: i64) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(
        "WITH gone AS (DELETE FROM outbox_parked WHERE seq = $1 RETURNING msg_id, subject, payload, headers, created_at)
         INSERT INTO outbox (msg_id, subject, payload, headers, created_at)
         SELECT msg_id, subject, payload, headers, created_at FROM gone",
    )
    .bind(seq)
    .execute(db)
    .await?
    .rows_affected();
    Ok(moved > 0)
}

/// Events set aside (the `crm_outbox_parked` gauge).
pub async fn parked_count(db: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox_parked").fetch_one(db).await
}
