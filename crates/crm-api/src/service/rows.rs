//! Row writes: the interest upsert and the sheet's cell edit, each with its event. Both go through the writer
//! ([`super::writer`]), which commits concurrent changes together; this module is what the routes call.

use super::writer::{Change, Outcome};
use crate::domain::{IfMatch, Interest, RowPatch};
use crate::error::ApiResult;
use crate::state::AppState;
use crm_mapping::CrmRow;
use uuid::Uuid;

pub use super::writer::IdempotencyKey;

/// What an interest request did.
pub enum InterestOutcome {
    /// The row was created (`created`) or updated, with its event.
    Written { created: bool, row: Box<CrmRow> },
    /// A retry of a request with the same key and body: its first response, and nothing new was written.
    Replayed { status: u16, body: Vec<u8> },
}

/// Records a lead's interest with its event (see [`Interest`] for what it does to the row). With a key, a retry
/// gets the first response and writes nothing; the key commits with the change it guards.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn record_interest(
    state: &AppState,
    workspace_id: Uuid,
    interest: Interest,
    key: Option<IdempotencyKey>,
) -> ApiResult<InterestOutcome> {
    Ok(match state.writer.submit(Change::Interest { workspace_id, interest, key }).await? {
        Outcome::Written { created, row } => InterestOutcome::Written { created, row },
        Outcome::Unchanged(row) => InterestOutcome::Written { created: false, row },
        Outcome::Replayed { status, body } => InterestOutcome::Replayed { status, body },
    })
}

/// What a cell edit did.
pub enum PatchOutcome {
    /// The edit sets every field to the value it has: nothing written, no event.
    Unchanged(Box<CrmRow>),
    /// The row at its new version, with its event.
    Changed(Box<CrmRow>),
}

/// Applies a cell edit with its event. `if_match` is the version the client last saw, when it sent one; it is
/// checked against the row as it is when the edit is applied (locked), so a concurrent edit in between is a 412,
/// not a lost update.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id, row_id = %id))]
pub async fn patch(
    state: &AppState,
    workspace_id: Uuid,
    id: Uuid,
    if_match: Option<IfMatch>,
    patch: RowPatch,
) -> ApiResult<PatchOutcome> {
    Ok(match state.writer.submit(Change::Patch { workspace_id, id, if_match, patch }).await? {
        Outcome::Unchanged(row) => PatchOutcome::Unchanged(row),
        Outcome::Written { row, .. } => PatchOutcome::Changed(row),
        // A patch carries no idempotency key.
        Outcome::Replayed { .. } => return Err(crate::error::ApiError::Unavailable),
    })
}
