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
pub struct AttemptRecord<'a> {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub status_code: Option<u16>,
    pub error: Option<&'a str>,
    pub excerpt: Option<&'a str>,
    pub status: Status,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Writes the attempt and the delivery's new state in one statement, and ends our lease.
pub async fn record(pool: &PgPool, a: &AttemptRecord<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH attempt AS (
             INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error,
                                            response_excerpt)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (delivery_id, attempt) DO NOTHING
         )
         UPDATE deliveries SET status = $8, attempts = GREATEST(attempts, $2), last_status_code = $5,
                last_error = $6, next_attempt_at = $9, lease_until = NULL, updated_at = now(),
                delivered_at = CASE WHEN $8 = 'succeeded' THEN now() ELSE delivered_at END
          WHERE id = $1",
    )
    .bind(a.delivery_id)
    .bind(a.attempt)
    .bind(a.started_at)
    .bind(i32::try_from(a.duration.as_millis()).unwrap_or(i32::MAX))
    .bind(a.status_code.map(i32::from))
    .bind(a.error)
    .bind(a.excerpt)
    .bind(a.status.as_str())
    .bind(a.next_attempt_at)
    .execute(pool)
    .await?;
    Ok(())
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
