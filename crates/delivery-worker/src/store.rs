//! The delivery log, as the worker writes it.
//!
//! [`claim`] is the send-log guard: a delivery that has ended (succeeded, failed, dead, skipped) is never sent
//! again, however often its message comes back; and a delivery another worker is sending right now (its lease is
//! live) is not sent twice at once. Each step is one statement, so a delivery costs two round trips: claim, then
//! record.

use chrono::{DateTime, Utc};
use crm_events::RowChangedEvent;
use sqlx::{PgPool, Row};
use std::time::Duration;
use uuid::Uuid;

/// What the guard says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours to send; `attempts` were made before, the retry budget counting from `budget_start` (a redelivery
    /// starts a fresh budget).
    Ready { attempts: i32, budget_start: i32 },
    /// The delivery ended already: acknowledge without sending.
    Ended,
    /// Another worker holds a live lease on it: hand it back for later.
    Leased,
}

/// A delivery's status, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Retrying,
    Succeeded,
    Failed,
    Dead,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Retrying => "retrying",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Dead => "dead",
            Status::Skipped => "skipped",
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Creates the delivery on first sight and takes a lease on it for `lease`.
pub async fn claim(pool: &PgPool, event: &RowChangedEvent, raw: &[u8], lease: Duration) -> Result<Claim, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO deliveries (id, workspace_id, event_type, row_id, status, event, lease_until)
         VALUES ($1, $2, $3, $4, 'pending', $5, now() + $6 * interval '1 millisecond')
         ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until, updated_at = now()
          WHERE deliveries.status IN ('pending', 'retrying')
            AND (deliveries.lease_until IS NULL OR deliveries.lease_until < now())
         RETURNING attempts, budget_start",
    )
    .bind(event.id)
    .bind(event.workspace_id)
    .bind(event.event_type.as_str())
    .bind(event.row.as_ref().map(|r| r.id))
    .bind(raw)
    .bind(millis(lease) as f64)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = row {
        return Ok(Claim::Ready { attempts: row.get("attempts"), budget_start: row.get("budget_start") });
    }
    let status: String =
        sqlx::query_scalar("SELECT status FROM deliveries WHERE id = $1").bind(event.id).fetch_one(pool).await?;
    Ok(if matches!(status.as_str(), "pending" | "retrying") { Claim::Leased } else { Claim::Ended })
}

/// Records a delivery as skipped (webhook off, or event not subscribed), creating it if needed. A delivery that has
/// already ended or is leased by another worker is left alone.
pub async fn skip(pool: &PgPool, event: &RowChangedEvent, raw: &[u8], reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO deliveries (id, workspace_id, event_type, row_id, status, event, last_error)
         VALUES ($1, $2, $3, $4, 'skipped', $5, $6)
         ON CONFLICT (id) DO UPDATE SET status = 'skipped', last_error = EXCLUDED.last_error, lease_until = NULL,
                                        next_attempt_at = NULL, updated_at = now()
          WHERE deliveries.status IN ('pending', 'retrying')
            AND (deliveries.lease_until IS NULL OR deliveries.lease_until < now())",
    )
    .bind(event.id)
    .bind(event.workspace_id)
    .bind(event.event_type.as_str())
    .bind(event.row.as_ref().map(|r| r.id))
    .bind(raw)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives up our lease without an attempt (hold-back or shutdown).
pub async fn release(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE deliveries SET lease_until = NULL WHERE id = $1").bind(id).execute(pool).await?;
    Ok(())
}

/// One attempt and where it left the delivery.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub excerpt: Option<String>,
    pub status: Status,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Writes attempts and their deliveries' new states, many in one statement (one round trip, one WAL flush), and
/// ends the leases. Attempt rows are keyed by (delivery, attempt), so writing a batch twice changes nothing.
pub async fn record_batch(pool: &PgPool, batch: &[AttemptRecord]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = batch.iter().map(|a| a.delivery_id).collect();
    let attempts: Vec<i32> = batch.iter().map(|a| a.attempt).collect();
    let started: Vec<DateTime<Utc>> = batch.iter().map(|a| a.started_at).collect();
    let durations: Vec<i32> = batch.iter().map(|a| i32::try_from(a.duration.as_millis()).unwrap_or(i32::MAX)).collect();
    let codes: Vec<Option<i32>> = batch.iter().map(|a| a.status_code.map(i32::from)).collect();
    let errors: Vec<Option<String>> = batch.iter().map(|a| a.error.clone()).collect();
    let excerpts: Vec<Option<String>> = batch.iter().map(|a| a.excerpt.clone()).collect();
    let statuses: Vec<&str> = batch.iter().map(|a| a.status.as_str()).collect();
    let next: Vec<Option<DateTime<Utc>>> = batch.iter().map(|a| a.next_attempt_at).collect();
    sqlx::query(
        "WITH input AS (
             SELECT * FROM unnest($1::uuid[], $2::int4[], $3::timestamptz[], $4::int4[], $5::int4[], $6::text[],
                                  $7::text[], $8::text[], $9::timestamptz[])
                 AS t(delivery_id, attempt, started_at, duration_ms, status_code, error, excerpt, status, next_at)
         ), attempt AS (
             INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error,
                                            response_excerpt)
             SELECT delivery_id, attempt, started_at, duration_ms, status_code, error, excerpt FROM input
             ON CONFLICT (delivery_id, attempt) DO NOTHING
         )
         UPDATE deliveries d SET status = i.status, attempts = GREATEST(d.attempts, i.attempt),
                last_status_code = i.status_code, last_error = i.error, next_attempt_at = i.next_at,
                lease_until = NULL, updated_at = now(),
                delivered_at = CASE WHEN i.status = 'succeeded' THEN now() ELSE d.delivered_at END
           FROM input i
          WHERE d.id = i.delivery_id",
    )
    .bind(ids)
    .bind(attempts)
    .bind(started)
    .bind(durations)
    .bind(codes)
    .bind(errors)
    .bind(excerpts)
    .bind(statuses)
    .bind(next)
    .execute(pool)
    .await?;
    Ok(())
}

/// Largest batch one statement writes.
const MAX_BATCH: usize = 512;

type Pending = (AttemptRecord, tokio::sync::oneshot::Sender<Result<(), String>>);

/// Collects attempt records from concurrent deliveries and writes them in batches. There is no timer: a record
/// that arrives while the previous batch is being written joins the next one, so a quiet worker writes each record
/// at once and a busy one amortises the round trip and the WAL flush over many.
#[derive(Clone)]
pub struct Recorder {
    queue: tokio::sync::mpsc::Sender<Pending>,
}

impl Recorder {
    pub fn spawn(pool: PgPool) -> Recorder {
        let (queue, mut incoming) = tokio::sync::mpsc::channel::<Pending>(4 * MAX_BATCH);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let records: Vec<AttemptRecord> = batch.iter().map(|(r, _)| r.clone()).collect();
                let result = record_batch(&pool, &records).await.map_err(|e| e.to_string());
                for (_, reply) in batch {
                    let _ = reply.send(result.clone());
                }
            }
        });
        Recorder { queue }
    }

    /// Records one attempt; returns once it is durable.
    pub async fn record(&self, record: AttemptRecord) -> Result<(), String> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.queue.send((record, reply)).await.map_err(|_| "recorder stopped".to_owned())?;
        done.await.map_err(|_| "recorder stopped".to_owned())?
    }
}

/// Turns a workspace's webhook off because its endpoint said it is gone, and says why in its settings.
pub async fn disable_webhook(pool: &PgPool, workspace_id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE webhook_settings SET enabled = false, disabled_reason = $2, updated_at = now() WHERE workspace_id = $1",
    )
    .bind(workspace_id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify('crm_settings', $1)").bind(workspace_id.to_string()).execute(&mut *tx).await?;
    tx.commit().await
}
