//! The delivery log, as the worker writes it.
//!
//! [`claim`] is the send-log guard: a delivery that has ended (succeeded, failed, dead, skipped) is never sent
//! again, however often its message comes back; and a delivery another worker is sending right now (its lease is
//! live) is not sent twice at once. A delivery costs its share of two batched statements: the claim
//! ([`Claimer`]), then the attempt record ([`attempts`]). Skips are batched the same way ([`Skipper`]), and durable:
//! a skip lost in a crash would not be redone, since its message is acknowledged.

pub mod attempts;
pub mod batcher;

pub use attempts::{
    record_batch, storable, write_batch, AttemptRecord, RecordError, Recorder, MAX_ERROR_BYTES, MAX_EXCERPT_BYTES,
};

use batcher::Batcher;
use bytes::Bytes;
use crm_db::{Channel, DeliveryStatus, SkipReason};
use crm_events::RowChangedEvent;
use service_common::db::Held;
use sqlx::{PgConnection, PgExecutor, PgPool};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A connection kept by one batching task (the [`Batcher`]'s writes run one at a time, so the lock is never
/// contended; it only lets each write borrow the connection).
fn shared(pool: PgPool) -> Arc<tokio::sync::Mutex<Held>> {
    Arc::new(tokio::sync::Mutex::new(Held::new(pool)))
}

/// Runs a batch's `write` of `items` items on the held connection, within its work timeout: every item is
/// unavailable when there is no connection or no answer in time, and a batch any of whose items found the
/// database unavailable closes the connection (the next batch takes another).
async fn on_held<R: Clone>(
    held: &tokio::sync::Mutex<Held>,
    items: usize,
    write: impl AsyncFnOnce(&mut PgConnection) -> Vec<Result<R, RecordError>>,
) -> Vec<Result<R, RecordError>> {
    let mut held = held.lock().await;
    let results = match held.run(async |conn| Ok::<_, sqlx::Error>(write(conn).await)).await {
        Ok(results) => results,
        Err(e) => vec![Err(unavailable(e)); items],
    };
    if results.iter().any(|r| matches!(r, Err(RecordError::Unavailable(_)))) {
        held.discard();
    }
    results
}

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

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Creates the delivery on first sight and takes a lease on it for `lease`.
pub async fn claim(
    conn: &mut PgConnection,
    event: &RowChangedEvent,
    raw: &[u8],
    lease: Duration,
) -> Result<Claim, sqlx::Error> {
    let row = sqlx::query!(
        "INSERT INTO deliveries (id, workspace_id, event_type, row_id, status, event, lease_until)
         VALUES ($1, $2, $3, $4, $5, $6, now() + $7 * interval '1 millisecond')
         ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until, updated_at = now()
          WHERE deliveries.status IN ('pending', 'retrying')
            AND (deliveries.lease_until IS NULL OR deliveries.lease_until < now())
         RETURNING attempts, budget_start",
        event.id,
        event.workspace_id,
        event.event_type.as_str(),
        event.row.as_ref().map(|r| r.id),
        DeliveryStatus::Pending.as_str(),
        raw,
        millis(lease) as f64
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = row {
        return Ok(Claim::Ready { attempts: row.attempts, budget_start: row.budget_start });
    }
    let status =
        sqlx::query_scalar!("SELECT status FROM deliveries WHERE id = $1", event.id).fetch_one(&mut *conn).await?;
    let ended = status.parse::<DeliveryStatus>().map_or(true, DeliveryStatus::has_ended);
    Ok(if ended { Claim::Ended } else { Claim::Leased })
}

/// A delivery to claim: its event as it came. Both are shared with the delivery that asks, not copied: the raw
/// bytes are only written when the delivery has to be created ([`claim`]), which is rare.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub event: Arc<RowChangedEvent>,
    pub raw: Bytes,
}

/// Claims many deliveries in one statement. crm-api creates each delivery with its event, so a claim is an update
/// of a row that is there; a delivery that is not (an event published by an older crm-api) is created by
/// [`claim`]. A delivery asked for twice in one batch (two copies of one message) is claimed once: the second
/// copy finds it leased.
pub async fn claim_many(
    conn: &mut PgConnection,
    requests: &[ClaimRequest],
    lease: Duration,
) -> Vec<Result<Claim, RecordError>> {
    match claim_many_once(conn, requests, lease).await {
        Ok(claims) => claims,
        Err(e) => vec![Err(unavailable(e)); requests.len()],
    }
}

async fn claim_many_once(
    conn: &mut PgConnection,
    requests: &[ClaimRequest],
    lease: Duration,
) -> Result<Vec<Result<Claim, RecordError>>, sqlx::Error> {
    let ids: Vec<Uuid> = requests.iter().map(|r| r.event.id).collect();
    let ready: HashMap<Uuid, Claim> = sqlx::query!(
        "UPDATE deliveries SET lease_until = now() + $2 * interval '1 millisecond'
          WHERE id = ANY($1) AND status IN ('pending', 'retrying')
            AND (lease_until IS NULL OR lease_until < now())
          RETURNING id, attempts, budget_start",
        &ids,
        millis(lease) as f64
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.id, Claim::Ready { attempts: r.attempts, budget_start: r.budget_start }))
    .collect();
    let others: Vec<Uuid> = ids.iter().filter(|id| !ready.contains_key(id)).copied().collect();
    let statuses: HashMap<Uuid, String> = if others.is_empty() {
        HashMap::new()
    } else {
        sqlx::query!("SELECT id, status FROM deliveries WHERE id = ANY($1)", &others)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.id, r.status))
            .collect()
    };
    let mut handed_out = std::collections::HashSet::new();
    let mut claims = Vec::with_capacity(requests.len());
    for request in requests {
        let id = request.event.id;
        let claim = match (ready.get(&id), statuses.get(&id)) {
            (Some(claim), _) if handed_out.insert(id) => Ok(*claim),
            (Some(_), _) => Ok(Claim::Leased),
            (None, Some(status)) => {
                let ended = status.parse::<DeliveryStatus>().map_or(true, DeliveryStatus::has_ended);
                Ok(if ended { Claim::Ended } else { Claim::Leased })
            }
            (None, None) if handed_out.insert(id) => {
                claim(&mut *conn, &request.event, &request.raw, lease).await.map_err(unavailable)
            }
            (None, None) => Ok(Claim::Leased),
        };
        claims.push(claim);
    }
    Ok(claims)
}

/// Claims deliveries in batches, on the asynchronously committing pool (a claim lost in a crash is taken again
/// when its message comes back).
#[derive(Clone)]
pub struct Claimer {
    batcher: Batcher<ClaimRequest, Result<Claim, RecordError>>,
}

impl Claimer {
    /// Starts the claimer's batching task, which keeps one connection of `pool` between batches.
    pub fn spawn(pool: PgPool, lease: Duration) -> Claimer {
        let held = shared(pool);
        Claimer {
            batcher: Batcher::spawn(move |batch: Vec<ClaimRequest>| {
                let held = held.clone();
                async move { on_held(&held, batch.len(), async |conn| claim_many(conn, &batch, lease).await).await }
            }),
        }
    }

    pub async fn claim(&self, request: ClaimRequest) -> Result<Claim, RecordError> {
        self.batcher.submit(request).await.unwrap_or_else(|| Err(RecordError::Unavailable("claimer stopped".into())))
    }
}

/// A delivery not sent, and why.
#[derive(Debug, Clone)]
pub struct SkipRecord {
    pub event_id: Uuid,
    pub workspace_id: Uuid,
    pub event_type: &'static str,
    pub row_id: Option<Uuid>,
    /// The event as it came, kept so it can be redelivered once the webhook is on.
    pub raw: Vec<u8>,
    pub reason: SkipReason,
}

impl SkipRecord {
    pub fn of(event: &RowChangedEvent, raw: &[u8], reason: SkipReason) -> Self {
        SkipRecord {
            event_id: event.id,
            workspace_id: event.workspace_id,
            event_type: event.event_type.as_str(),
            row_id: event.row.as_ref().map(|r| r.id),
            raw: raw.to_vec(),
            reason,
        }
    }
}

/// Records deliveries as skipped, creating them if needed, many per statement. A delivery that has already
/// ended, or is leased by another worker, is left alone.
pub async fn skip_batch(db: impl PgExecutor<'_>, batch: &[SkipRecord]) -> Result<(), sqlx::Error> {
    // One statement cannot touch a row twice: a second copy of one event (a redelivery racing the first) is
    // dropped here, and the first copy's skip stands for both.
    let mut seen = std::collections::HashSet::new();
    let batch: Vec<&SkipRecord> = batch.iter().filter(|s| seen.insert(s.event_id)).collect();
    let ids: Vec<Uuid> = batch.iter().map(|s| s.event_id).collect();
    let workspaces: Vec<Uuid> = batch.iter().map(|s| s.workspace_id).collect();
    let types: Vec<&str> = batch.iter().map(|s| s.event_type).collect();
    let rows: Vec<Option<Uuid>> = batch.iter().map(|s| s.row_id).collect();
    let events: Vec<&[u8]> = batch.iter().map(|s| s.raw.as_slice()).collect();
    let reasons: Vec<&str> = batch.iter().map(|s| s.reason.as_str()).collect();
    sqlx::query!(
        "INSERT INTO deliveries (id, workspace_id, event_type, row_id, status, event, last_error)
         SELECT id, workspace_id, event_type, row_id, $7, event, reason
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::bytea[], $6::text[])
             AS t(id, workspace_id, event_type, row_id, event, reason)
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, last_error = EXCLUDED.last_error,
                                        lease_until = NULL, next_attempt_at = NULL, updated_at = now()
          WHERE deliveries.status IN ('pending', 'retrying')
            AND (deliveries.lease_until IS NULL OR deliveries.lease_until < now())",
        &ids,
        &workspaces,
        &types as &[&str],
        &rows as &[Option<Uuid>],
        &events as &[&[u8]],
        &reasons as &[&str],
        DeliveryStatus::Skipped.as_str()
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Writes skips in batches, durably; a batch the database refuses is written one by one.
#[derive(Clone)]
pub struct Skipper {
    batcher: Batcher<SkipRecord, Result<(), RecordError>>,
}

impl Skipper {
    /// Starts the skipper's batching task, which keeps one connection of `pool` between batches.
    pub fn spawn(pool: PgPool) -> Skipper {
        let held = shared(pool);
        Skipper {
            batcher: Batcher::spawn(move |batch: Vec<SkipRecord>| {
                let held = held.clone();
                async move {
                    on_held(&held, batch.len(), async |conn| match skip_batch(&mut *conn, &batch).await {
                        Ok(()) => vec![Ok(()); batch.len()],
                        Err(e) if batch.len() > 1 && attempts::refused_for_its_rows(&e) => {
                            let mut results = Vec::with_capacity(batch.len());
                            for skip in &batch {
                                let result = skip_batch(&mut *conn, std::slice::from_ref(skip)).await;
                                results.push(result.map_err(unavailable));
                            }
                            results
                        }
                        Err(e) => vec![Err(unavailable(e)); batch.len()],
                    })
                    .await
                }
            }),
        }
    }

    /// Records one skip; returns once it is durable.
    pub async fn skip(&self, record: SkipRecord) -> Result<(), RecordError> {
        self.batcher.submit(record).await.unwrap_or_else(|| Err(RecordError::Unavailable("skipper stopped".into())))
    }
}

fn unavailable(e: sqlx::Error) -> RecordError {
    RecordError::Unavailable(e.to_string())
}

/// Ends the open delivery of an event this build cannot read (an event with no delivery is left alone: there is
/// nothing to end, and no workspace to create one under).
pub async fn fail_undecodable(db: impl PgExecutor<'_>, id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE deliveries SET status = $2, last_error = $3, lease_until = NULL, next_attempt_at = NULL,
                               updated_at = now()
          WHERE id = $1 AND status IN ('pending', 'retrying')",
        id,
        DeliveryStatus::Failed.as_str(),
        reason
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Gives up our lease without an attempt (shutdown).
pub async fn release(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE deliveries SET lease_until = NULL WHERE id = $1", id).execute(db).await?;
    Ok(())
}

/// Turns a workspace's webhook off because its endpoint said it is gone, and says why in its settings.
pub async fn disable_webhook(pool: &PgPool, workspace_id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "UPDATE webhook_settings SET enabled = false, disabled_reason = $2, updated_at = now() WHERE workspace_id = $1",
        workspace_id,
        reason
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("SELECT pg_notify($1, $2) AS notified", Channel::Settings.name(), workspace_id.to_string())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use crm_db::DeliveryStatus;

    /// The checked queries spell statuses as SQL literals (a bound array would hide them from the planner): every
    /// `status IN (...)` of this module must list exactly the statuses that have not ended.
    #[test]
    fn the_sql_status_lists_are_the_open_statuses() {
        let open: Vec<String> =
            DeliveryStatus::ALL.iter().filter(|s| !s.has_ended()).map(|s| format!("'{s}'")).collect();
        let source = include_str!("mod.rs");
        let lists: Vec<&str> = source
            .match_indices("status IN (")
            .map(|(at, needle)| {
                let rest = &source[at + needle.len()..];
                &rest[..rest.find(')').unwrap()]
            })
            .filter(|list| list.starts_with('\''))
            .collect();
        assert!(lists.len() >= 4, "{lists:?}");
        for list in lists {
            assert_eq!(list.split(", ").collect::<Vec<_>>(), open, "{list}");
        }
    }
}
