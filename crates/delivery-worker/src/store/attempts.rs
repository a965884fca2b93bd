//! Attempt records: one per HTTP attempt, written with the delivery's new state, many per statement.

use super::batcher::Batcher;
use chrono::{DateTime, Utc};
use crm_db::DeliveryStatus;
use sqlx::{PgConnection, PgExecutor, PgPool};
use std::time::Duration;
use uuid::Uuid;

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
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Longest `response_excerpt` the log takes: its CHECK allows 1 KiB of UTF-8.
pub const MAX_EXCERPT_BYTES: usize = crate::sender::EXCERPT_BYTES;
/// Longest `error` written. The worker's own reasons are a line long; this bounds whatever else might end up there.
pub const MAX_ERROR_BYTES: usize = 1024;
/// The error of a record written in its degraded form.
const DEGRADED_ERROR_BYTES: usize = 200;

/// `text` as a PostgreSQL `text` column always takes it: NUL (the one character PostgreSQL refuses) replaced by
/// U+FFFD, then cut on a character boundary to at most `max_bytes` bytes.
pub fn storable(text: &str, max_bytes: usize) -> String {
    let mut text = text.replace('\0', "\u{FFFD}");
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl AttemptRecord {
    /// The record with every text field made storable: no NUL, the excerpt within the log's CHECK, the error
    /// bounded. The sender already produces such text; this is the store's own guarantee that nothing the worker
    /// writes can make PostgreSQL refuse a record (and with it, a whole batch).
    pub fn sanitized(mut self) -> AttemptRecord {
        self.error = self.error.map(|error| storable(&error, MAX_ERROR_BYTES));
        self.excerpt = self.excerpt.map(|excerpt| storable(&excerpt, MAX_EXCERPT_BYTES));
        self
    }

    /// The last form tried for a record the database refused: the outcome without the receiver's text (no
    /// excerpt, a short error), which is what matters for the delivery's state.
    fn degraded(&self) -> AttemptRecord {
        AttemptRecord {
            excerpt: None,
            error: self.error.as_deref().map(|error| storable(error, DEGRADED_ERROR_BYTES)),
            ..self.clone()
        }
    }
}

/// Writes attempts and their deliveries' new states, many in one statement (one round trip, one WAL flush), and
/// ends the leases. Attempt rows are keyed by (delivery, attempt), so writing a batch twice changes nothing.
///
/// The statement is all or nothing: one record the database refuses fails the whole batch. [`write_batch`] is the
/// write that copes with that; this one writes the records exactly as given.
pub async fn record_batch(db: impl PgExecutor<'_>, batch: &[AttemptRecord]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = batch.iter().map(|a| a.delivery_id).collect();
    let attempts: Vec<i32> = batch.iter().map(|a| a.attempt).collect();
    let started: Vec<DateTime<Utc>> = batch.iter().map(|a| a.started_at).collect();
    let durations: Vec<i32> = batch.iter().map(|a| i32::try_from(a.duration.as_millis()).unwrap_or(i32::MAX)).collect();
    let codes: Vec<Option<i32>> = batch.iter().map(|a| a.status_code.map(i32::from)).collect();
    let errors: Vec<Option<String>> = batch.iter().map(|a| a.error.clone()).collect();
    let excerpts: Vec<Option<String>> = batch.iter().map(|a| a.excerpt.clone()).collect();
    let statuses: Vec<&str> = batch.iter().map(|a| a.status.as_str()).collect();
    let next: Vec<Option<DateTime<Utc>>> = batch.iter().map(|a| a.next_attempt_at).collect();
    sqlx::query!(
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
          WHERE d.id = ANY($1) AND d.id = i.delivery_id",
        &ids,
        &attempts,
        &started,
        &durations,
        &codes as &[Option<i32>],
        &errors as &[Option<String>],
        &excerpts as &[Option<String>],
        &statuses as &[&str],
        &next as &[Option<DateTime<Utc>>]
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Why an attempt record is not in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The database could not be reached or did not answer (or the recorder is gone): writing again later may work.
    #[error("the delivery log is unavailable: {0}")]
    Unavailable(String),
    /// The database refused the record, alone and in its degraded form (for example, its delivery no longer
    /// exists): writing it again will not help.
    #[error("the delivery log refused the record: {0}")]
    Refused(String),
}

/// Whether the database refused the statement for the rows it writes (a data exception or a constraint
/// violation, SQLSTATE classes 22 and 23), as opposed to not being there to run it. Only such a refusal is worth
/// splitting a batch for: when the database is away, every smaller write would fail the same way, each after the
/// same wait. Narrower than `service_common::db::is_refusal`, which asks whether the connection stays usable (a
/// serialization failure, say, leaves it usable, but is no reason to write the rows one by one).
pub(super) fn refused_for_its_rows(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

/// Writes `batch` and says, for each record in order, whether it is in the log, so one bad record never keeps
/// the others out. One statement first; if the database refuses it, each record is written on its own, and a
/// record refused alone once more in its degraded form (no excerpt, a short error). When the database is
/// unavailable, every record is reported so without further tries.
pub async fn write_batch(conn: &mut PgConnection, batch: &[AttemptRecord]) -> Vec<Result<(), RecordError>> {
    let refusal = match record_batch(&mut *conn, batch).await {
        Ok(()) => return vec![Ok(()); batch.len()],
        Err(e) if refused_for_its_rows(&e) => e,
        Err(e) => return vec![Err(RecordError::Unavailable(e.to_string())); batch.len()],
    };
    if batch.len() > 1 {
        tracing::warn!(error = %refusal, records = batch.len(), "attempt batch refused; writing records one by one");
    }
    let mut results = Vec::with_capacity(batch.len());
    for record in batch {
        // Once the database is away, the records left would only wait for it one after another.
        let result = match results.last() {
            Some(Err(RecordError::Unavailable(e))) => Err(RecordError::Unavailable(e.clone())),
            _ => write_alone(conn, record, batch.len() == 1).await,
        };
        results.push(result);
    }
    results
}

/// Writes one record; if the database refuses it (or `refused_already`), writes its degraded form.
async fn write_alone(
    conn: &mut PgConnection,
    record: &AttemptRecord,
    refused_already: bool,
) -> Result<(), RecordError> {
    if !refused_already {
        match record_batch(&mut *conn, std::slice::from_ref(record)).await {
            Ok(()) => return Ok(()),
            Err(e) if refused_for_its_rows(&e) => {}
            Err(e) => return Err(RecordError::Unavailable(e.to_string())),
        }
    }
    match record_batch(&mut *conn, std::slice::from_ref(&record.degraded())).await {
        Ok(()) => {
            tracing::warn!(delivery_id = %record.delivery_id, attempt = record.attempt,
                "attempt record refused; written without its response excerpt");
            Ok(())
        }
        Err(e) if refused_for_its_rows(&e) => {
            tracing::error!(delivery_id = %record.delivery_id, attempt = record.attempt, error = %e,
                "attempt record refused, even degraded");
            Err(RecordError::Refused(e.to_string()))
        }
        Err(e) => Err(RecordError::Unavailable(e.to_string())),
    }
}

/// Writes attempt records in batches, durably: each record gets its own answer ([`write_batch`]), so one the
/// database refuses does not fail the others of its batch.
#[derive(Clone)]
pub struct Recorder {
    batcher: Batcher<AttemptRecord, Result<(), RecordError>>,
}

impl Recorder {
    /// Starts the recorder's batching task, which keeps one connection of `pool` between batches.
    pub fn spawn(pool: PgPool) -> Recorder {
        let held = super::shared(pool);
        Recorder {
            batcher: Batcher::spawn(move |batch: Vec<AttemptRecord>| {
                let held = held.clone();
                async move { super::on_held(&held, batch.len(), async |conn| write_batch(conn, &batch).await).await }
            }),
        }
    }

    /// Records one attempt, [sanitized](AttemptRecord::sanitized); returns once it is durable.
    pub async fn record(&self, record: AttemptRecord) -> Result<(), RecordError> {
        self.batcher
            .submit(record.sanitized())
            .await
            .unwrap_or_else(|| Err(RecordError::Unavailable("recorder stopped".to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(error: Option<&str>, excerpt: Option<&str>) -> AttemptRecord {
        AttemptRecord {
            delivery_id: Uuid::now_v7(),
            attempt: 1,
            started_at: Utc::now(),
            duration: Duration::from_millis(5),
            status_code: Some(200),
            error: error.map(str::to_owned),
            excerpt: excerpt.map(str::to_owned),
            status: DeliveryStatus::Succeeded,
            next_attempt_at: None,
        }
    }

    #[test]
    fn storable_replaces_nul_and_cuts_on_a_char_boundary() {
        assert_eq!(storable("ok\0", 1024), "ok\u{FFFD}");
        assert_eq!(storable("abc", 1024), "abc");
        // "é" is 2 bytes: a cut at 5 bytes falls inside the third one.
        assert_eq!(storable("ééé", 5), "éé");
        // The replacement is cut too: three NULs are 9 bytes of U+FFFD.
        assert_eq!(storable("\0\0\0", 7), "\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn sanitized_record_fits_the_log() {
        let long = format!("{}\0", "€".repeat(700));
        let clean = record(Some(&long), Some(&long)).sanitized();
        let (error, excerpt) = (clean.error.unwrap(), clean.excerpt.unwrap());
        assert!(excerpt.len() <= 1024 && excerpt.len() > 1020, "{}", excerpt.len());
        assert!(error.len() <= MAX_ERROR_BYTES && !error.contains('\0') && !excerpt.contains('\0'));
        assert!(long.starts_with(&excerpt));
        let untouched = record(Some("HTTP 503"), Some("busy")).sanitized();
        assert_eq!((untouched.error.as_deref(), untouched.excerpt.as_deref()), (Some("HTTP 503"), Some("busy")));
    }

    #[test]
    fn degraded_record_keeps_the_outcome_without_the_receivers_text() {
        let original = record(Some(&"x\0".repeat(500)), Some("ok"));
        let degraded = original.degraded();
        assert_eq!(degraded.excerpt, None);
        let error = degraded.error.unwrap();
        assert!(error.len() <= DEGRADED_ERROR_BYTES && !error.contains('\0'));
        assert_eq!(
            (degraded.delivery_id, degraded.attempt, degraded.status, degraded.status_code),
            (original.delivery_id, 1, DeliveryStatus::Succeeded, Some(200))
        );
    }
}
