//! The outbox table: enqueue in the caller's transaction; claim, publish and delete in the relay's. Events the
//! relay cannot publish are parked (`outbox_parked`) with their reason until an operator re-drives them.

use crm_events::{RowChangedEvent, Subjects};
use sqlx::types::Json;
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// One event waiting to be published.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: i64,
    pub msg_id: Uuid,
    pub subject: String,
    pub payload: Vec<u8>,
    pub headers: Json<BTreeMap<String, String>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// An event to enqueue: the body as the stream will carry it, where, with which message id and headers.
pub struct NewEvent<'a> {
    pub msg_id: Uuid,
    pub subject: String,
    pub payload: Vec<u8>,
    /// Message headers: the request's W3C trace context.
    pub headers: &'a BTreeMap<String, String>,
}

impl<'a> NewEvent<'a> {
    /// `event` on its workspace's subject, its id as the message id.
    pub fn of(subjects: &Subjects, event: &RowChangedEvent, headers: &'a BTreeMap<String, String>) -> Self {
        NewEvent {
            msg_id: event.id,
            subject: subjects.row_changed(event.workspace_id),
            payload: event.to_bytes(),
            headers,
        }
    }
}

/// Adds an event to the outbox on `conn`: inside the caller's transaction it commits (or not) with the change it
/// describes.
#[tracing::instrument(skip_all, fields(event_id = %event.msg_id))]
pub async fn enqueue(conn: &mut PgConnection, event: &NewEvent<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO outbox (msg_id, subject, payload, headers) VALUES ($1, $2, $3, $4)",
        event.msg_id,
        event.subject,
        event.payload,
        sqlx::types::Json(event.headers) as _
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Wakes the relays (at commit of the caller's transaction) for events written outside crm-api's writers.
pub async fn notify(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT pg_notify($1, '') AS notified", crm_db::Channel::Outbox.name()).fetch_one(conn).await?;
    Ok(())
}

/// Queues the stored events of deliveries again, in one statement inside the caller's transaction: each under a
/// fresh message id (the event id would be dropped by the stream's duplicate window), its body copied from the
/// delivery in the database, all on `subject` (one workspace's) with `headers`. `deliveries` pairs each delivery id
/// with its new message id; they are queued in that order.
pub async fn enqueue_redeliveries(
    tx: &mut PgConnection,
    subject: &str,
    deliveries: &[(Uuid, Uuid)],
    headers: &BTreeMap<String, String>,
) -> Result<(), sqlx::Error> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = deliveries.iter().map(|(id, _)| *id).collect();
    let msg_ids: Vec<Uuid> = deliveries.iter().map(|(_, msg_id)| *msg_id).collect();
    sqlx::query!(
        "INSERT INTO outbox (msg_id, subject, payload, headers)
         SELECT t.msg_id, $3, d.event, $4
           FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS t(delivery_id, msg_id, n)
           JOIN deliveries d ON d.id = t.delivery_id
          ORDER BY t.n",
        &ids,
        &msg_ids,
        subject,
        Json(headers) as _
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Adds many events to the outbox in one statement, inside the caller's transaction, without their bodies: each
/// event's delivery, created in the same transaction, holds the body, and the relay reads it from there. Returns
/// each event's sequence number, by event id.
pub async fn enqueue_many_with_deliveries(
    conn: &mut PgConnection,
    events: &[NewEvent<'_>],
) -> Result<HashMap<Uuid, i64>, sqlx::Error> {
    if events.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.msg_id).collect();
    let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
    let headers: Vec<serde_json::Value> =
        events.iter().map(|e| serde_json::to_value(e.headers).unwrap_or_default()).collect();
    let seqs = sqlx::query!(
        "INSERT INTO outbox (msg_id, subject, headers) SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[])
         RETURNING seq, msg_id",
        &ids,
        &subjects as &[&str],
        &headers
    )
    .fetch_all(conn)
    .await?;
    Ok(seqs.into_iter().map(|r| (r.msg_id, r.seq)).collect())
}

/// Deletes published events (the relay's direct path: it publishes what this process's writers committed, then
/// deletes their rows). Rows another relay took meanwhile are gone already; that is fine.
pub async fn delete_published(db: impl sqlx::PgExecutor<'_>, seqs: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM outbox WHERE seq = ANY($1)", seqs).execute(db).await?;
    Ok(())
}

/// Takes up to `limit` unpublished events, oldest first, skipping rows another relay holds: they are deleted
/// in the caller's transaction and come back if it rolls back (a failed publish, a crash), so taking them and
/// marking them sent is one statement. Committing the transaction is the mark.
///
/// Events a writer committed (those without a body of their own) are left alone for `direct` after their commit:
/// their replica's relay is publishing them directly ([`crate::relay::Handoff`]) and deletes them within
/// [`crate::relay::DELETE_EVERY`] of their publish, so a pass taking them too would only publish them twice. Other
/// events (a test event, a redelivery, a re-driven parked event) are taken at once.
///
/// An event enqueued without its body gets it from its delivery. One whose delivery is gone (its workspace was
/// deleted, which deletes its deliveries) is dropped: there is nobody left to send it to.
pub async fn take(tx: &mut PgConnection, limit: i64, direct: std::time::Duration) -> Result<Vec<Pending>, sqlx::Error> {
    let taken = sqlx::query!(
        r#"WITH taken AS (
             DELETE FROM outbox
              WHERE seq IN (SELECT seq FROM outbox
                             WHERE payload IS NOT NULL OR created_at < now() - $2 * interval '1 millisecond'
                             ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING seq, msg_id, subject, payload, headers, created_at)
           SELECT t.seq AS "seq!", t.msg_id AS "msg_id!", t.subject AS "subject!",
                  COALESCE(t.payload, d.event) AS payload,
                  t.headers AS "headers!: Json<BTreeMap<String, String>>", t.created_at AS "created_at!"
             FROM taken t LEFT JOIN deliveries d ON t.payload IS NULL AND d.id = t.msg_id"#,
        limit,
        direct.as_millis() as f64
    )
    .fetch_all(tx)
    .await?;
    let mut pending = Vec::with_capacity(taken.len());
    for t in taken {
        match t.payload {
            Some(payload) => pending.push(Pending {
                seq: t.seq,
                msg_id: t.msg_id,
                subject: t.subject,
                payload,
                headers: t.headers,
                created_at: t.created_at,
            }),
            None => tracing::info!(event_id = %t.msg_id, "outbox event dropped: its delivery (and workspace) are gone"),
        }
    }
    // RETURNING does not promise an order; publish in commit order.
    pending.sort_unstable_by_key(|p| p.seq);
    Ok(pending)
}

/// Whether at least `n` events wait to be published: a recovery adds nothing while they do, so live events never
/// queue behind more than one of its batches. Rows a writer committed count once they are `after` old (see
/// [`backlog`]).
pub async fn backlog_at_least(db: &sqlx::PgPool, n: i64, after: std::time::Duration) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) >= $1 AS "enough!"
             FROM (SELECT 1 FROM outbox
                    WHERE payload IS NOT NULL OR created_at < now() - $2 * interval '1 millisecond'
                    ORDER BY seq LIMIT $1) o"#,
        n,
        after.as_millis() as f64
    )
    .fetch_one(db)
    .await
}

/// Events not yet published (the `crm_outbox_backlog` gauge). A row a writer committed (one without a body of its
/// own) counts once it is `after` old: until then its relay has most likely published it and is gathering its
/// delete with others (`relay::BACKLOG_AFTER`). Both counts read the table in key order, through its primary key,
/// as every statement of the relay's key-lookup pool does.
pub async fn backlog(db: &sqlx::PgPool, after: std::time::Duration) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!"
             FROM (SELECT 1 FROM outbox
                    WHERE payload IS NOT NULL OR created_at < now() - $1 * interval '1 millisecond'
                    ORDER BY seq) o"#,
        after.as_millis() as f64
    )
    .fetch_one(db)
    .await
}

/// Sets events aside, in the relay's transaction (they were taken out of the outbox in it), with why.
pub async fn park(tx: &mut PgConnection, parked: &[(&Pending, String)]) -> Result<(), sqlx::Error> {
    for (p, reason) in parked {
        sqlx::query!(
            "INSERT INTO outbox_parked (seq, msg_id, subject, payload, headers, created_at, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (seq) DO UPDATE SET reason = EXCLUDED.reason,
             parked_at = now()",
            p.seq,
            p.msg_id,
            p.subject,
            p.payload,
            Json(&p.headers.0) as _,
            p.created_at,
            reason
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// An outbox event the relay set aside because it cannot be published, as the operator route shows it (never its
/// payload: it carries a person's row).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = ParkedEvent)]
pub struct Parked {
    /// The event's outbox sequence number; the id for re-driving it.
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
    sqlx::query_as!(
        Parked,
        r#"SELECT seq, msg_id, subject, octet_length(payload) AS "size_bytes!", reason, created_at, parked_at
             FROM outbox_parked WHERE seq > $1 ORDER BY seq LIMIT $2"#,
        after_seq,
        limit
    )
    .fetch_all(db)
    .await
}

/// Puts a parked event back into the outbox (at the end of the queue) for the relay to try again. Returns
/// whether it was parked.
pub async fn redrive(db: &sqlx::PgPool, seq: i64) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let moved = sqlx::query!(
        "WITH gone AS (DELETE FROM outbox_parked WHERE seq = $1 RETURNING msg_id, subject, payload, headers, created_at)
         INSERT INTO outbox (msg_id, subject, payload, headers, created_at)
         SELECT msg_id, subject, payload, headers, created_at FROM gone",
        seq
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved > 0 {
        notify(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(moved > 0)
}

/// Events set aside (the `crm_outbox_parked` gauge).
pub async fn parked_count(db: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM outbox_parked"#).fetch_one(db).await
}
