//! Row writes: the interest upsert and the sheet's cell edit, each with its event, and what commits together.
//!
//! Each write is one statement that changes the row and enqueues its event ([`crate::repo::rows`]). The new row
//! and its event are built before the write from the row as read ([`crate::domain`]), and the write is
//! conditioned on the version read (optimistic concurrency): a concurrent change in between sends the flow round
//! again, and after [`OPTIMISTIC_TRIES`] lost races the flow takes the row lock instead, so a hot row cannot
//! starve a writer. A request with an `Idempotency-Key` runs in a transaction, so the key commits with the change
//! it guards.

use crate::domain::{Change, IfMatch, Interest, RowPatch};
use crate::error::{ApiError, ApiResult};
use crate::repo::outbox::NewEvent;
use crate::repo::{idempotency, is_unique_violation, rows};
use crate::state::AppState;
use chrono::{DateTime, SubsecRound, Utc};
use crm_events::{Subjects, Trigger};
use crm_mapping::CrmRow;
use sqlx::{Acquire, PgConnection};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Optimistic tries before a write takes the row lock instead: under heavy contention on one row, optimism alone
/// could starve a writer; the lock guarantees progress.
const OPTIMISTIC_TRIES: usize = 2;

/// An `Idempotency-Key` and the hash of the request body it was sent with.
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: Vec<u8>,
}

/// What an interest request did.
pub enum InterestOutcome {
    /// The row was created (`created`) or updated, with its event.
    Written { created: bool, row: Box<CrmRow> },
    /// A retry of a request with the same key and body: its first response, and nothing new was written.
    Replayed { status: u16, body: Vec<u8> },
}

/// Records a lead's interest with its event (see [`Interest`] for what it does to the row).
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn record_interest(
    state: &AppState,
    workspace_id: Uuid,
    interest: &Interest,
    key: Option<IdempotencyKey>,
) -> ApiResult<InterestOutcome> {
    let now = Utc::now().trunc_subsecs(6);
    let Some(key) = key else {
        let mut conn = state.pool.acquire().await?;
        let change = write_interest(&mut conn, &state.subjects, workspace_id, interest, now).await?;
        return Ok(InterestOutcome::Written { created: change.before.is_none(), row: Box::new(change.after) });
    };
    let mut tx = state.pool.begin().await?;
    if let Some(stored) = idempotency::claim(&mut tx, workspace_id, &key.key, &key.request_hash).await? {
        tx.rollback().await?;
        if stored.request_hash != key.request_hash {
            return Err(ApiError::field("Idempotency-Key", "was already used with a different request body"));
        }
        return Ok(InterestOutcome::Replayed { status: stored.status, body: stored.body });
    }
    let change = write_interest(&mut tx, &state.subjects, workspace_id, interest, now).await?;
    let created = change.before.is_none();
    let body = serde_json::to_vec(&change.after).map_err(ApiError::internal)?;
    idempotency::complete(&mut tx, workspace_id, &key.key, if created { 201 } else { 200 }, &body).await?;
    tx.commit().await?;
    Ok(InterestOutcome::Written { created, row: Box::new(change.after) })
}

/// Inserts the lead's row, or updates it when the lead exists; on `conn` inside a transaction they commit with it.
async fn write_interest(
    conn: &mut PgConnection,
    subjects: &Subjects,
    workspace_id: Uuid,
    interest: &Interest,
    now: DateTime<Utc>,
) -> Result<Change, sqlx::Error> {
    let headers = service_common::trace::current_headers();
    for attempt in 0.. {
        // Insert first: a new lead costs one statement.
        let change = Change { before: None, after: interest.new_row(workspace_id, now) };
        let event = change.event(Trigger::LeadInterest);
        if rows::insert_with_event(conn, &change.after, &NewEvent::of(subjects, &event, &headers)).await? {
            return Ok(change);
        }
        let updated = if attempt >= OPTIMISTIC_TRIES {
            let mut tx = conn.begin().await?;
            let updated = interest_update_once(&mut tx, subjects, workspace_id, interest, now, &headers, true).await?;
            tx.commit().await?;
            updated
        } else {
            interest_update_once(conn, subjects, workspace_id, interest, now, &headers, false).await?
        };
        if let Some(change) = updated {
            return Ok(change);
        }
    }
    unreachable!("the loop only ends by returning")
}

/// One try at updating a known lead's row; `None` when it raced with another change (or the row vanished).
async fn interest_update_once(
    db: &mut PgConnection,
    subjects: &Subjects,
    workspace_id: Uuid,
    interest: &Interest,
    now: DateTime<Utc>,
    headers: &BTreeMap<String, String>,
    lock: bool,
) -> Result<Option<Change>, sqlx::Error> {
    let Some(before) = rows::find_by_email(db, workspace_id, &interest.email, lock).await? else { return Ok(None) };
    let expected = before.version;
    let change = Change { after: interest.next_row(&before, now), before: Some(before) };
    let event = change.event(Trigger::LeadInterest);
    let written =
        rows::update_with_event(db, &change.after, expected, &NewEvent::of(subjects, &event, headers)).await?;
    Ok(written.then_some(change))
}

/// What a cell edit did.
pub enum PatchOutcome {
    /// The edit sets every field to the value it has: nothing written, no event.
    Unchanged(CrmRow),
    /// The row at its new version, with its event.
    Changed(CrmRow),
}

/// Applies a cell edit with its event. `if_match` is the version the client last saw, when it sent one; it is
/// checked against the version the write is conditioned on, so a concurrent edit in between is a 412, not a lost
/// update.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id, row_id = %id))]
pub async fn patch(
    state: &AppState,
    workspace_id: Uuid,
    id: Uuid,
    if_match: Option<IfMatch>,
    patch: &RowPatch,
) -> ApiResult<PatchOutcome> {
    let mut conn = state.pool.acquire().await?;
    let headers = service_common::trace::current_headers();
    let edit =
        Edit { subjects: &state.subjects, workspace_id, id, if_match: if_match.as_ref(), patch, headers: &headers };
    for attempt in 0.. {
        let outcome = if attempt >= OPTIMISTIC_TRIES {
            let mut tx = conn.begin().await?;
            let outcome = edit.once(&mut tx, true).await?;
            tx.commit().await?;
            outcome
        } else {
            edit.once(&mut conn, false).await?
        };
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
    unreachable!("the loop only ends by returning")
}

/// One cell edit, as [`patch`] tries it.
struct Edit<'a> {
    subjects: &'a Subjects,
    workspace_id: Uuid,
    id: Uuid,
    if_match: Option<&'a IfMatch>,
    patch: &'a RowPatch,
    headers: &'a BTreeMap<String, String>,
}

impl Edit<'_> {
    /// One try; `None` when it raced with another change.
    async fn once(&self, db: &mut PgConnection, lock: bool) -> ApiResult<Option<PatchOutcome>> {
        let before = rows::find(db, self.workspace_id, self.id, lock).await?.ok_or(ApiError::NotFound("row"))?;
        if let Some(if_match) = self.if_match {
            if !if_match.matches(before.version) {
                return Err(ApiError::PreconditionFailed { current: before.version });
            }
        }
        let wanted = self.patch.apply(&before).map_err(|(field, message)| ApiError::field(field, message))?;
        if wanted == before {
            return Ok(Some(PatchOutcome::Unchanged(before)));
        }
        let expected = before.version;
        let after = CrmRow { version: before.version + 1, updated_at: Utc::now().trunc_subsecs(6), ..wanted };
        let change = Change { before: Some(before), after };
        let event = change.event(Trigger::CrmEdit);
        let written =
            rows::update_with_event(db, &change.after, expected, &NewEvent::of(self.subjects, &event, self.headers))
                .await
                .map_err(|e| {
                    if is_unique_violation(&e, "crm_rows_workspace_email_key") {
                        ApiError::Conflict {
                            field: Some("email"),
                            message: "another row of this workspace already has this email".into(),
                        }
                    } else {
                        e.into()
                    }
                })?;
        Ok(written.then_some(PatchOutcome::Changed(change.after)))
    }
}
