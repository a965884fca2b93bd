//! Group commit: row changes that arrive together share one statement and one commit.
//!
//! Handlers hand their checked change ([`Change`]) to a writer task through a channel and wait for their own
//! answer. A writer takes whatever is waiting (no timer: a lone request goes at once, a busy moment fills a batch)
//! and writes it in two round trips: it reads the rows the batch is about, applies the changes in order in memory
//! with the domain's rules (so two changes of one row in one batch see each other), and writes the new rows, the
//! changed rows (each only if it is still at the version read), their events, their pending deliveries and the
//! `Idempotency-Key`s with their responses in **one statement** that commits durably on its own
//! ([`batch::write`]). Only then is any request answered, so a 2xx still means the change and its event are
//! committed. A batch of interests alone is usually all new leads (an import, a form): while that keeps holding,
//! the writer skips the read and writes the batch as new in one round trip, reading it only if the statement finds
//! a lead existing after all ([`Unread`]).
//!
//! The statement refuses itself (serialization failure, nothing written) when a row it changes has moved on since
//! it was read, a lead it creates was created meanwhile, or a key it stores exists already (a replay, or the same
//! key in flight). A batch without keys is then read and tried in one statement once more (the writer it raced has
//! committed by then); after that, or at once for a batch with keys, it is written the careful way: in a
//! transaction that claims the keys, locks every row the batch touches (in id order, so concurrent batches cannot
//! deadlock on them) and writes one statement per kind. A batch that fails as a whole (a unique email taken by a concurrent writer, anything) is written again
//! one change at a time, so one bad request never fails its neighbours; each then gets its own error (a taken
//! email is 409).
//!
//! After a commit the writer hands the batch's events, bodies and all, to this process's relay
//! ([`crate::relay::Handoff`]), which publishes them at once without reading them back; the outbox rows are the
//! record that they are still to be published if that does not happen.

use crate::domain::{self, IfMatch, Interest, RowPatch};
use crate::error::{ApiError, ApiResult};
use crate::metrics::{WritePath, WriterMetrics};
use crate::relay::Handoff;
use crate::repo::batch::{self, KeyResponse};
use crate::repo::outbox::{NewEvent, Pending};
use crate::repo::{deliveries, idempotency, is_unique_violation, outbox, rows};
use chrono::{DateTime, SubsecRound, Utc};
use crm_events::{RowChangedEvent, Subjects, Trigger};
use crm_mapping::CrmRow;
use service_common::db::Held;
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

mod unread;
use unread::{Known, Unread};

/// Most changes in one batch.
pub const MAX_BATCH: usize = 256;

/// How often a batch is tried in one statement before it is written in a transaction that locks its rows.
const UNLOCKED_TRIES: usize = 2;

/// An `Idempotency-Key` and the hash of the request body it was sent with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: Vec<u8>,
}

/// One requested change.
pub enum Change {
    Interest { workspace_id: Uuid, interest: Interest, key: Option<IdempotencyKey> },
    Patch { workspace_id: Uuid, id: Uuid, if_match: Option<IfMatch>, patch: RowPatch },
}

/// What a change did.
#[derive(Debug)]
pub enum Outcome {
    /// The row was created (`created`) or changed, with its event; `row` is the row as this change left it.
    Written { created: bool, row: Box<CrmRow> },
    /// The change would set every field to the value it has: nothing written, no event.
    Unchanged(Box<CrmRow>),
    /// A retry of an interest with the same key and body: its first response; nothing new was written.
    Replayed { status: u16, body: Vec<u8> },
}

type Reply = oneshot::Sender<ApiResult<Outcome>>;

/// A change as queued: with the trace context of the request that asked for it (its event carries it on), and
/// where its answer goes.
struct Queued {
    change: Change,
    trace: BTreeMap<String, String>,
    reply: Reply,
}

/// The handle handlers submit through. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Queued>,
}

impl Writer {
    /// Starts `writers` writer tasks on one queue; each commits on `pool`, hands what it committed to `relay` and
    /// counts its batches in `metrics`.
    pub fn spawn(pool: PgPool, subjects: Subjects, relay: Handoff, writers: usize, metrics: WriterMetrics) -> Writer {
        Writer::spawn_holding(pool, subjects, relay, writers, metrics, Held::new)
    }

    /// [`Writer::spawn`], each writer keeping its connection as `hold` sets it up (its checks and its work timeout,
    /// see [`Held`]).
    pub fn spawn_holding(
        pool: PgPool,
        subjects: Subjects,
        relay: Handoff,
        writers: usize,
        metrics: WriterMetrics,
        hold: fn(PgPool) -> Held,
    ) -> Writer {
        let (queue, incoming) = mpsc::channel::<Queued>(4 * MAX_BATCH);
        let incoming = Arc::new(tokio::sync::Mutex::new(incoming));
        let known = Known::shared();
        for _ in 0..writers.max(1) {
            let known = known.clone();
            let (pool, subjects, relay, incoming) = (pool.clone(), subjects.clone(), relay.clone(), incoming.clone());
            let metrics = metrics.clone();
            tokio::spawn(async move {
                // Each writer keeps its own connection between batches (see `Held`), and its own record of how its
                // unread writes fare.
                let mut task = Task { held: hold(pool), unread: Unread::new(known) };
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut incoming = incoming.lock().await;
                        if incoming.recv_many(&mut batch, MAX_BATCH).await == 0 {
                            return;
                        }
                    }
                    write(&mut task, &subjects, &relay, &metrics, batch).await;
                }
            });
        }
        Writer { queue }
    }

    /// Writes one change and waits until it is committed (or refused).
    pub async fn submit(&self, change: Change) -> ApiResult<Outcome> {
        let (reply, answer) = oneshot::channel();
        let gone = || ApiError::Unavailable;
        let queued = Queued { change, trace: service_common::trace::current_headers(), reply };
        self.queue.send(queued).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Writes a batch, or its changes one by one when the batch as a whole fails. A batch that cannot reach the
/// database (no connection, a broken one, no answer within the work timeout) is answered `503` whole.
async fn write(task: &mut Task, subjects: &Subjects, relay: &Handoff, metrics: &WriterMetrics, batch: Vec<Queued>) {
    // A key given twice in one batch: the later request must see the earlier one's stored answer, so it goes in a
    // batch of its own after this one.
    let mut seen = HashSet::new();
    let (now, later): (Vec<_>, Vec<_>) = batch.into_iter().partition(|q| match &q.change {
        Change::Interest { workspace_id, key: Some(key), .. } => seen.insert((*workspace_id, key.key.clone())),
        _ => true,
    });
    let items: Vec<(&Change, &BTreeMap<String, String>)> = now.iter().map(|q| (&q.change, &q.trace)).collect();
    match run_held(task, subjects, metrics, &items).await {
        Ok(((outcomes, committed), path)) => {
            metrics.written(path, items.len());
            relay.hand(committed);
            for (q, outcome) in now.into_iter().zip(outcomes) {
                let _ = q.reply.send(outcome);
            }
        }
        Err(e) if now.len() == 1 => {
            metrics.written(WritePath::Failed, 1);
            let q = now.into_iter().next().expect("one change");
            let _ = q.reply.send(Err(error(e)));
        }
        Err(e) if service_common::db::is_unavailable(&e) => {
            // The database could not be reached, the connection broke, or the server ended the work itself: one by
            // one, each change would wait for the database in turn (up to the pool's acquire timeout).
            tracing::warn!(error = %e, changes = now.len(), "database unavailable for a writer batch");
            metrics.written(WritePath::Failed, now.len());
            for q in now {
                let _ = q.reply.send(Err(ApiError::Unavailable));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, changes = now.len(), "batch failed; writing its changes one by one");
            metrics.written(WritePath::Failed, now.len());
            for q in now {
                let outcome = run_held(task, subjects, metrics, &[(&q.change, &q.trace)]).await.map(
                    |((mut outcomes, committed), path)| {
                        metrics.written(path, 1);
                        relay.hand(committed);
                        outcomes.remove(0)
                    },
                );
                let _ = q.reply.send(outcome.map_err(error).and_then(|o| o));
            }
        }
    }
    for q in later {
        Box::pin(write(task, subjects, relay, metrics, vec![q])).await;
    }
}

/// [`run`] on the held connection, within its work timeout; the connection is closed after an error that may have
/// broken it, or after no answer.
async fn run_held(
    task: &mut Task,
    subjects: &Subjects,
    metrics: &WriterMetrics,
    changes: &[(&Change, &BTreeMap<String, String>)],
) -> Result<(Written, WritePath), sqlx::Error> {
    let unread = &mut task.unread;
    let result = task.held.run(async |conn| run(conn, subjects, unread, metrics, changes).await).await;
    if result.is_ok() {
        task.unread.remember(changes.iter().map(|(c, _)| *c));
    }
    result
}

/// What one writer task keeps between batches.
struct Task {
    held: Held,
    unread: Unread,
}

fn is_serialization_failure(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("40001"))
}

/// Whether a failed transaction is worth running again as it was: a deadlock or a serialization failure.
fn is_transient(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// A failed write as the API answers it.
fn error(e: sqlx::Error) -> ApiError {
    if is_unique_violation(&e, "crm_rows_workspace_email_key") {
        ApiError::Conflict {
            field: Some("email"),
            message: "another row of this workspace already has this email".into(),
        }
    } else {
        e.into()
    }
}

/// A row the batch touches: as it is now in memory, and the version it had when read (`None`: new in this batch).
struct Slot {
    row: CrmRow,
    read_at: Option<i64>,
}

/// What a batch wrote: each change's answer, and the events committed with them for the relay.
type Written = (Vec<ApiResult<Outcome>>, Vec<Pending>);

/// The batch: in one statement if nothing it read changed meanwhile (read and tried again once if something did),
/// else in a transaction that locks what it touches, run again (at most three times) when another writer created
/// one of its new leads meanwhile (the next run finds the row) or the transaction deadlocked. `Err` only when the write failed; a change the rules refuse
/// (412, 404, a cap) is that change's `Err` inside. With what was written, the path it took.
async fn run(
    conn: &mut PgConnection,
    subjects: &Subjects,
    unread: &mut Unread,
    metrics: &WriterMetrics,
    changes: &[(&Change, &BTreeMap<String, String>)],
) -> Result<(Written, WritePath), sqlx::Error> {
    // Interests only, in leads this process has not written lately: perhaps every lead is new (see `Unread`).
    if unread.try_now(changes.iter().map(|(c, _)| *c)) {
        match run_unlocked(&mut *conn, subjects, changes, Read::Skip).await {
            Ok(written) => {
                unread.fared(true);
                return Ok((written, WritePath::Unread));
            }
            // The guard: a lead taken for new exists (the batch has no keys, see `Unread::try_now`).
            Err(e) if is_serialization_failure(&e) => {
                unread.fared(false);
                metrics.unread_missed();
            }
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
    // A row another writer changed between the read and the write refuses the statement; read and write again
    // once (that writer has committed by then) before taking locks. A batch with an `Idempotency-Key` is refused
    // every time one of its keys is a replay, so it tries once.
    let keyed = changes.iter().any(|(c, _)| matches!(c, Change::Interest { key: Some(_), .. }));
    for try_ in 0..if keyed { 1 } else { UNLOCKED_TRIES } {
        match run_unlocked(&mut *conn, subjects, changes, Read::Rows).await {
            Ok(written) => {
                return Ok((written, if try_ == 0 { WritePath::Statement } else { WritePath::StatementAgain }))
            }
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
    for pass in 0..3 {
        match run_locked(&mut *conn, subjects, changes).await {
            Ok(Some(written)) => return Ok((written, WritePath::Locked)),
            Ok(None) if pass < 2 => continue,
            Ok(None) => {
                return Err(sqlx::Error::Protocol("new leads' emails kept being taken by other writers".into()))
            }
            Err(e) if is_transient(&e) && pass < 2 => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns on its last pass")
}

/// The rows a batch's changes are about: (workspace, email) of interests, and (workspace, id) of edits.
type Targets = (Vec<(Uuid, String)>, Vec<(Uuid, Uuid)>);

/// The rows a batch's changes are about ([`Targets`]); changes already answered are left out.
fn targets(changes: &[&Change], outcomes: &[Option<ApiResult<Outcome>>]) -> Targets {
    let mut emails = Vec::new();
    let mut ids = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        match change {
            _ if outcomes[i].is_some() => {}
            Change::Interest { workspace_id, interest, .. } => emails.push((*workspace_id, interest.email.clone())),
            Change::Patch { workspace_id, id, .. } => ids.push((*workspace_id, *id)),
        }
    }
    (emails, ids)
}

/// A batch's changes applied in memory to the rows read for it.
struct Applied {
    slots: HashMap<Uuid, Slot>,
    /// Each event with the index of the change that made it (whose trace it carries).
    events: Vec<(RowChangedEvent, usize)>,
    /// The responses to store under the changes' `Idempotency-Key`s: (change index, status, body).
    responses: Vec<(usize, u16, Vec<u8>)>,
}

impl Applied {
    /// Applies the changes not answered yet, in order, each seeing the ones before it; answers each.
    fn apply(
        changes: &[&Change],
        outcomes: &mut [Option<ApiResult<Outcome>>],
        read: Vec<CrmRow>,
        now: DateTime<Utc>,
    ) -> Applied {
        let mut slots: HashMap<Uuid, Slot> = HashMap::new();
        let mut by_email: HashMap<(Uuid, String), Uuid> = HashMap::new();
        for row in read {
            by_email.insert((row.workspace_id, row.email.to_lowercase()), row.id);
            slots.insert(row.id, Slot { read_at: Some(row.version), row });
        }
        let mut events = Vec::new();
        let mut responses = Vec::new();
        for (i, change) in changes.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            let outcome = match change {
                Change::Interest { workspace_id, interest, key } => {
                    let (outcome, event) = apply_interest(&mut slots, &mut by_email, *workspace_id, interest, now);
                    events.push((event, i));
                    if key.is_some() {
                        if let Outcome::Written { created, row } = &outcome {
                            let body = serde_json::to_vec(row.as_ref()).unwrap_or_default();
                            responses.push((i, if *created { 201 } else { 200 }, body));
                        }
                    }
                    Ok(outcome)
                }
                Change::Patch { workspace_id, id, if_match, patch } => {
                    apply_patch(&mut slots, *workspace_id, *id, if_match.as_ref(), patch, now).map(
                        |(outcome, event)| {
                            events.extend(event.map(|e| (e, i)));
                            outcome
                        },
                    )
                }
            };
            outcomes[i] = Some(outcome);
        }
        Applied { slots, events, responses }
    }

    /// Rows new in this batch.
    /// In id order, like every row this batch writes: two batches writing the same rows take their row locks in
    /// the same order and cannot deadlock on them.
    fn new_rows(&self) -> Vec<&CrmRow> {
        let mut rows: Vec<&CrmRow> = self.slots.values().filter(|s| s.read_at.is_none()).map(|s| &s.row).collect();
        rows.sort_unstable_by_key(|r| r.id);
        rows
    }

    /// Rows changed by this batch, with the version each must still be at.
    /// In id order (see [`Applied::new_rows`]).
    fn changed_rows(&self) -> Vec<(&CrmRow, i64)> {
        let mut rows: Vec<(&CrmRow, i64)> = self
            .slots
            .values()
            .filter_map(|s| s.read_at.filter(|v| *v != s.row.version).map(|v| (&s.row, v)))
            .collect();
        rows.sort_unstable_by_key(|(r, _)| r.id);
        rows
    }

    /// The events as the outbox and the stream carry them.
    fn messages<'a>(
        &self,
        subjects: &Subjects,
        items: &'a [(&Change, &BTreeMap<String, String>)],
    ) -> Vec<NewEvent<'a>> {
        self.events.iter().map(|(e, i)| NewEvent::of(subjects, e, items[*i].1)).collect()
    }

    /// The keys to store with their responses.
    fn keys<'a>(&'a self, changes: &[&'a Change]) -> Vec<KeyResponse<'a>> {
        self.responses
            .iter()
            .filter_map(|(i, status, body)| match changes[*i] {
                Change::Interest { workspace_id, key: Some(key), .. } => Some(KeyResponse {
                    workspace_id: *workspace_id,
                    key: key.key.as_str(),
                    request_hash: key.request_hash.as_slice(),
                    status: *status,
                    body: body.as_slice(),
                }),
                _ => None,
            })
            .collect()
    }
}

/// Each change's answer, once the batch has given every change one.
fn answers(outcomes: Vec<Option<ApiResult<Outcome>>>) -> Vec<ApiResult<Outcome>> {
    outcomes.into_iter().map(|o| o.unwrap_or(Err(ApiError::Unavailable))).collect()
}

/// The events of a committed batch as the relay publishes them.
fn committed(messages: Vec<NewEvent<'_>>, seqs: &HashMap<Uuid, i64>, at: DateTime<Utc>) -> Vec<Pending> {
    messages
        .into_iter()
        .filter_map(|m| {
            Some(Pending {
                seq: *seqs.get(&m.msg_id)?,
                msg_id: m.msg_id,
                subject: m.subject,
                payload: m.payload,
                headers: sqlx::types::Json(m.headers.clone()),
                created_at: at,
            })
        })
        .collect()
}

/// The batch in one statement, without a transaction or locks: the rows are read, the changes applied, and
/// everything written at once, each changed row only if it is still at the version read. `Err` with a
/// serialization failure when something read has changed meanwhile (nothing is written then).
async fn run_unlocked(
    conn: &mut PgConnection,
    subjects: &Subjects,
    items: &[(&Change, &BTreeMap<String, String>)],
    read: Read,
) -> Result<Written, sqlx::Error> {
    let changes: Vec<&Change> = items.iter().map(|(c, _)| *c).collect();
    let mut outcomes: Vec<Option<ApiResult<Outcome>>> = changes.iter().map(|_| None).collect();
    let read = match read {
        Read::Rows => {
            let (emails, ids) = targets(&changes, &outcomes);
            rows::read_for_change(&mut *conn, &emails, &ids).await?
        }
        Read::Skip => Vec::new(),
    };
    let now = Utc::now().trunc_subsecs(6);
    let applied = Applied::apply(&changes, &mut outcomes, read, now);
    if applied.events.is_empty() {
        // Nothing changes (every row written and every key stored comes with an event): edits that set what is
        // there already, or refused ones, are answered from the rows as read.
        return Ok((answers(outcomes), Vec::new()));
    }
    let messages = applied.messages(subjects, items);
    let events: Vec<&RowChangedEvent> = applied.events.iter().map(|(e, _)| e).collect();
    let keys = applied.keys(&changes);
    let seqs = batch::write(
        conn,
        &batch::Batch {
            new: &applied.new_rows(),
            changed: &applied.changed_rows(),
            events: &events,
            messages: &messages,
            keys: &keys,
        },
    )
    .await?;
    let committed = committed(messages, &seqs, Utc::now());
    Ok((answers(outcomes), committed))
}

/// Whether [`run_unlocked`] reads the rows its changes are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Rows,
    /// Takes every row for new: a batch of interests whose leads are expected not to exist. If one does, the write
    /// refuses itself like a write that read a row which has moved on since.
    Skip,
}

/// One try at the batch in a transaction that locks what it touches; `None` when a new lead turned out to exist
/// already.
async fn run_locked(
    conn: &mut PgConnection,
    subjects: &Subjects,
    items: &[(&Change, &BTreeMap<String, String>)],
) -> Result<Option<Written>, sqlx::Error> {
    let changes: Vec<&Change> = items.iter().map(|(c, _)| *c).collect();
    let mut tx = conn.begin().await?;
    let now = Utc::now().trunc_subsecs(6);
    let mut outcomes: Vec<Option<ApiResult<Outcome>>> = changes.iter().map(|_| None).collect();

    // Keys first: a replay is answered from what its first request stored and changes nothing.
    let keyed: Vec<(usize, Uuid, &IdempotencyKey)> = changes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Change::Interest { workspace_id, key: Some(key), .. } => Some((i, *workspace_id, key)),
            _ => None,
        })
        .collect();
    if !keyed.is_empty() {
        let wanted: Vec<(Uuid, &str, &[u8])> =
            keyed.iter().map(|(_, ws, k)| (*ws, k.key.as_str(), k.request_hash.as_slice())).collect();
        let claimed: HashSet<(Uuid, String)> = idempotency::claim_many(&mut tx, &wanted).await?.into_iter().collect();
        let replays: Vec<(Uuid, &str)> = keyed
            .iter()
            .filter(|(_, ws, k)| !claimed.contains(&(*ws, k.key.clone())))
            .map(|(_, ws, k)| (*ws, k.key.as_str()))
            .collect();
        if !replays.is_empty() {
            let stored: HashMap<(Uuid, String), idempotency::Stored> =
                idempotency::stored_many(&mut tx, &replays).await?.into_iter().map(|(ws, k, s)| ((ws, k), s)).collect();
            for (i, ws, key) in &keyed {
                if let Some(s) = stored.get(&(*ws, key.key.clone())) {
                    outcomes[*i] = Some(if s.request_hash == key.request_hash {
                        Ok(Outcome::Replayed { status: s.status, body: s.body.clone() })
                    } else {
                        Err(ApiError::field("Idempotency-Key", "was already used with a different request body"))
                    });
                }
            }
        }
    }

    // Every row the rest of the batch touches, locked; the changes in order, each seeing the ones before it.
    let (emails, ids) = targets(&changes, &outcomes);
    let locked = rows::lock_for_change(&mut tx, &emails, &ids).await?;
    let applied = Applied::apply(&changes, &mut outcomes, locked, now);

    // One statement per kind.
    let new = applied.new_rows();
    let changed = applied.changed_rows();
    let inserted = rows::insert(&mut tx, &new).await?;
    if inserted.len() < new.len() {
        // Another writer created a lead this batch thought new; its row is there now.
        tx.rollback().await?;
        return Ok(None);
    }
    let written = rows::update(&mut tx, &changed).await?;
    if written.len() < changed.len() {
        return Err(sqlx::Error::Protocol("a locked row changed under the batch".into()));
    }
    let messages = applied.messages(subjects, items);
    let seqs = outbox::enqueue_many_with_deliveries(&mut tx, &messages).await?;
    let pending: Vec<(&RowChangedEvent, &[u8])> =
        applied.events.iter().zip(&messages).map(|((e, _), m)| (e, m.payload.as_slice())).collect();
    deliveries::create_pending_many(&mut tx, &pending).await?;
    let done: Vec<(Uuid, &str, u16, &[u8])> =
        applied.keys(&changes).into_iter().map(|k| (k.workspace_id, k.key, k.status, k.body)).collect();
    idempotency::complete_many(&mut tx, &done).await?;
    tx.commit().await?;
    let committed = committed(messages, &seqs, Utc::now());
    Ok(Some((answers(outcomes), committed)))
}

/// An interest, applied to the batch's rows: the lead's row created or updated, and its event.
fn apply_interest(
    slots: &mut HashMap<Uuid, Slot>,
    by_email: &mut HashMap<(Uuid, String), Uuid>,
    workspace_id: Uuid,
    interest: &Interest,
    now: DateTime<Utc>,
) -> (Outcome, RowChangedEvent) {
    let email = (workspace_id, interest.email.to_lowercase());
    match by_email.get(&email).and_then(|id| slots.get_mut(id)) {
        Some(slot) => {
            let change = domain::Change { after: interest.next_row(&slot.row, now), before: Some(slot.row.clone()) };
            let event = change.event(Trigger::LeadInterest);
            slot.row = change.after.clone();
            (Outcome::Written { created: false, row: Box::new(change.after) }, event)
        }
        None => {
            let change = domain::Change { before: None, after: interest.new_row(workspace_id, now) };
            let event = change.event(Trigger::LeadInterest);
            by_email.insert(email, change.after.id);
            slots.insert(change.after.id, Slot { row: change.after.clone(), read_at: None });
            (Outcome::Written { created: true, row: Box::new(change.after) }, event)
        }
    }
}

/// A cell edit, applied to the batch's rows: `If-Match` against the row as the batch has it so far, the caps on
/// the merged row, and the event of an effective change.
fn apply_patch(
    slots: &mut HashMap<Uuid, Slot>,
    workspace_id: Uuid,
    id: Uuid,
    if_match: Option<&IfMatch>,
    patch: &RowPatch,
    now: DateTime<Utc>,
) -> ApiResult<(Outcome, Option<RowChangedEvent>)> {
    let slot = slots.get_mut(&id).filter(|s| s.row.workspace_id == workspace_id).ok_or(ApiError::NotFound("row"))?;
    let before = &slot.row;
    if let Some(if_match) = if_match {
        if !if_match.matches(before.version) {
            return Err(ApiError::PreconditionFailed { current: before.version });
        }
    }
    let wanted = patch.apply(before).map_err(|(field, message)| ApiError::field(field, message))?;
    if wanted == *before {
        return Ok((Outcome::Unchanged(Box::new(before.clone())), None));
    }
    let after = CrmRow { version: before.version + 1, updated_at: now, ..wanted };
    let change = domain::Change { before: Some(before.clone()), after };
    let event = change.event(Trigger::CrmEdit);
    slot.row = change.after.clone();
    Ok((Outcome::Written { created: false, row: Box::new(change.after) }, Some(event)))
}
