//! CRM rows: reads, the lead-interest upsert and the sheet's cell edit.
//!
//! Every write is one statement that changes the row and inserts its event into the outbox together: atomic
//! without an explicit transaction, and one round trip. The new row and its event are built here, before the
//! write, from the row as read; the write is conditioned on the version read (optimistic concurrency), and a
//! concurrent change in between sends the flow round again. A write that would change nothing writes nothing.

use crate::domain::{Contact, Interest, RowPatch};
use chrono::{DateTime, SubsecRound, Utc};
use crm_events::{RowChangedEvent, Subjects, Trigger};
use crm_mapping::{CrmRow, PipelineStage, ROW_FIELDS};
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{Acquire, PgConnection, PgExecutor};
use uuid::Uuid;

/// Every column of a row, in the shape [`DbRow`] reads.
const COLUMNS: &str = "id, workspace_id, version, email, first_name, last_name, phone, company, job_title, \
    linkedin_url, campaign, interest_type, interest_channel, interest_message, interest_at, interest_count, \
    pipeline_stage, owner, deal_value::text AS deal_value, deal_currency, next_step_at, notes, custom_fields, \
    created_at, updated_at";

#[derive(sqlx::FromRow)]
struct DbRow {
    id: Uuid,
    workspace_id: Uuid,
    version: i64,
    email: String,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    company: Option<String>,
    job_title: Option<String>,
    linkedin_url: Option<String>,
    campaign: Option<String>,
    interest_type: Option<String>,
    interest_channel: Option<String>,
    interest_message: Option<String>,
    interest_at: Option<DateTime<Utc>>,
    interest_count: i64,
    pipeline_stage: String,
    owner: Option<String>,
    deal_value: Option<String>,
    deal_currency: Option<String>,
    next_step_at: Option<DateTime<Utc>>,
    notes: Option<String>,
    custom_fields: Json<Map<String, Value>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<DbRow> for CrmRow {
    fn from(r: DbRow) -> Self {
        CrmRow {
            id: r.id,
            workspace_id: r.workspace_id,
            version: r.version,
            email: r.email,
            first_name: r.first_name,
            last_name: r.last_name,
            phone: r.phone,
            company: r.company,
            job_title: r.job_title,
            linkedin_url: r.linkedin_url,
            campaign: r.campaign,
            interest_type: r.interest_type,
            interest_channel: r.interest_channel,
            interest_message: r.interest_message,
            interest_at: r.interest_at,
            interest_count: r.interest_count,
            // The table's CHECK constraint admits only known stages.
            pipeline_stage: r.pipeline_stage.parse().unwrap_or(PipelineStage::New),
            owner: r.owner,
            deal_value: r.deal_value,
            deal_currency: r.deal_currency,
            next_step_at: r.next_step_at,
            notes: r.notes,
            custom_fields: r.custom_fields.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A row before and after an effective change.
pub struct Change {
    pub before: Option<CrmRow>,
    pub after: CrmRow,
}

impl Change {
    /// The fields whose values differ, in column order, with their previous values. Bookkeeping fields (version,
    /// updated_at) always move with a change and are not listed.
    pub fn diff(&self) -> (Vec<String>, Map<String, Value>) {
        let Some(before) = &self.before else {
            return (Vec::new(), Map::new());
        };
        let (old, new) = (before.to_json(), self.after.to_json());
        let mut changed = Vec::new();
        let mut previous = Map::new();
        for field in ROW_FIELDS.iter().copied() {
            if matches!(field, "id" | "workspace_id" | "version" | "created_at" | "updated_at") {
                continue;
            }
            if old.get(field) != new.get(field) {
                changed.push(field.to_owned());
                previous.insert(field.to_owned(), old.get(field).cloned().unwrap_or(Value::Null));
            }
        }
        (changed, previous)
    }
}

#[tracing::instrument(skip(db))]
pub async fn get(db: impl PgExecutor<'_>, workspace_id: Uuid, id: Uuid) -> Result<Option<CrmRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM crm_rows WHERE id = $1 AND workspace_id = $2");
    let row: Option<DbRow> = sqlx::query_as(&sql).bind(id).bind(workspace_id).fetch_optional(db).await?;
    Ok(row.map(CrmRow::from))
}

/// Filters of the row list.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub before: Option<Uuid>,
    pub stage: Option<PipelineStage>,
    /// Case-insensitive substring of email, names or company.
    pub q: Option<String>,
    pub limit: i64,
}

/// Newest first. Ids are UUIDv7, so `id DESC` is creation order and the id is the cursor. The span says whether
/// there was a search, never what was searched for: the text is usually a person's name or email.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id, stage = ?f.stage, search = f.q.is_some()))]
pub async fn list(db: impl PgExecutor<'_>, workspace_id: Uuid, f: &ListFilter) -> Result<Vec<CrmRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM crm_rows
          WHERE workspace_id = $1
            AND ($2::uuid IS NULL OR id < $2)
            AND ($3::text IS NULL OR pipeline_stage = $3)
            AND ($4::text IS NULL OR email ILIKE $4 OR first_name ILIKE $4 OR last_name ILIKE $4 OR company ILIKE $4)
          ORDER BY id DESC
          LIMIT $5"
    );
    let pattern = f.q.as_deref().map(|q| format!("%{}%", escape_like(q)));
    let rows: Vec<DbRow> = sqlx::query_as(&sql)
        .bind(workspace_id)
        .bind(f.before)
        .bind(f.stage.map(PipelineStage::as_str))
        .bind(pattern)
        .bind(f.limit)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(CrmRow::from).collect())
}

fn escape_like(q: &str) -> String {
    q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

async fn find_by_email(
    conn: &mut PgConnection,
    workspace_id: Uuid,
    email: &str,
    lock: bool,
) -> Result<Option<CrmRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM crm_rows WHERE workspace_id = $1 AND lower(email) = lower($2){}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row: Option<DbRow> = sqlx::query_as(&sql).bind(workspace_id).bind(email).fetch_optional(conn).await?;
    Ok(row.map(CrmRow::from))
}

/// Optimistic tries before a write takes the row lock instead: under heavy contention on one row, optimism alone
/// could starve a writer; the lock guarantees progress.
const OPTIMISTIC_TRIES: usize = 2;

/// A statement returning the new outbox row's sequence number.
type WithEvent<'q> = sqlx::query::QueryScalar<'q, sqlx::Postgres, i64, sqlx::postgres::PgArguments>;

/// Binds a row's every column as `$1`..`$25` (in `crm_rows` column order) and its event as `$26`..`$29`: the one
/// parameter layout both row writes use.
fn bind_change<'q>(q: WithEvent<'q>, subjects: &Subjects, row: &'q CrmRow, event: &RowChangedEvent) -> WithEvent<'q> {
    q.bind(row.id)
        .bind(row.workspace_id)
        .bind(row.version)
        .bind(&row.email)
        .bind(&row.first_name)
        .bind(&row.last_name)
        .bind(&row.phone)
        .bind(&row.company)
        .bind(&row.job_title)
        .bind(&row.linkedin_url)
        .bind(&row.campaign)
        .bind(&row.interest_type)
        .bind(&row.interest_channel)
        .bind(&row.interest_message)
        .bind(row.interest_at)
        .bind(row.interest_count)
        .bind(row.pipeline_stage.as_str())
        .bind(&row.owner)
        .bind(&row.deal_value)
        .bind(&row.deal_currency)
        .bind(row.next_step_at)
        .bind(&row.notes)
        .bind(Json(&row.custom_fields))
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(event.id)
        .bind(subjects.row_changed(row.workspace_id))
        .bind(event.to_bytes())
        // The request's trace context, so the publish and the delivery attempts continue its trace.
        .bind(Json(service_common::trace::current_headers()))
}

/// Inserts a new row and its event in one statement: atomic on its own, so no transaction is needed. Returns false
/// (and writes nothing) when the workspace already has a row with this email.
async fn insert_with_event(
    conn: &mut PgConnection,
    subjects: &Subjects,
    row: &CrmRow,
    event: &RowChangedEvent,
) -> Result<bool, sqlx::Error> {
    let statement = sqlx::query_scalar(
        "WITH row AS (
             INSERT INTO crm_rows (id, workspace_id, version, email, first_name, last_name, phone, company,
                 job_title, linkedin_url, campaign, interest_type, interest_channel, interest_message, interest_at,
                 interest_count, pipeline_stage, owner, deal_value, deal_currency, next_step_at, notes, custom_fields,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19::numeric,
                 $20, $21, $22, $23, $24, $25)
             ON CONFLICT (workspace_id, lower(email)) DO NOTHING
             RETURNING id
         )
         INSERT INTO outbox (msg_id, subject, payload, headers) SELECT $26, $27, $28, $29 FROM row RETURNING seq",
    );
    Ok(bind_change(statement, subjects, row, event).fetch_optional(conn).await?.is_some())
}

/// Writes a row's new state and its event in one statement, if the row is still at `expected_version`
/// (optimistic concurrency: no lock is held between reading the row and writing it). Returns false when another
/// change got there first.
async fn update_with_event(
    conn: &mut PgConnection,
    subjects: &Subjects,
    row: &CrmRow,
    expected_version: i64,
    event: &RowChangedEvent,
) -> Result<bool, sqlx::Error> {
    let statement = sqlx::query_scalar(
        "WITH row AS (
             UPDATE crm_rows SET version = $3, email = $4, first_name = $5, last_name = $6, phone = $7,
                 company = $8, job_title = $9, linkedin_url = $10, campaign = $11, interest_type = $12,
                 interest_channel = $13, interest_message = $14, interest_at = $15, interest_count = $16,
                 pipeline_stage = $17, owner = $18, deal_value = $19::numeric, deal_currency = $20,
                 next_step_at = $21, notes = $22, custom_fields = $23, updated_at = $25
              WHERE id = $1 AND workspace_id = $2 AND created_at = $24 AND version = $30
             RETURNING id
         )
         INSERT INTO outbox (msg_id, subject, payload, headers) SELECT $26, $27, $28, $29 FROM row RETURNING seq",
    );
    let statement = bind_change(statement, subjects, row, event).bind(expected_version);
    Ok(statement.fetch_optional(conn).await?.is_some())
}

/// A lead's first row.
fn new_row(workspace_id: Uuid, interest: &Interest, occurred_at: DateTime<Utc>, now: DateTime<Utc>) -> CrmRow {
    let c: &Contact = &interest.contact;
    CrmRow {
        id: Uuid::now_v7(),
        workspace_id,
        version: 1,
        email: interest.email.clone(),
        first_name: c.first_name.clone(),
        last_name: c.last_name.clone(),
        phone: c.phone.clone(),
        company: c.company.clone(),
        job_title: c.job_title.clone(),
        linkedin_url: c.linkedin_url.clone(),
        campaign: interest.campaign.clone(),
        interest_type: Some(interest.kind.clone()),
        interest_channel: interest.channel.clone(),
        interest_message: interest.message.clone(),
        interest_at: Some(occurred_at),
        interest_count: 1,
        pipeline_stage: PipelineStage::New,
        owner: None,
        deal_value: None,
        deal_currency: None,
        next_step_at: None,
        notes: None,
        custom_fields: Map::new(),
        created_at: now,
        updated_at: now,
    }
}

/// An existing row after another interest: the interest fields set and counted; contact fields only fill empty
/// ones (a sales person's edit is never overwritten by a pipeline); a given campaign replaces the current one.
fn with_interest(before: &CrmRow, interest: &Interest, occurred_at: DateTime<Utc>, now: DateTime<Utc>) -> CrmRow {
    let c: &Contact = &interest.contact;
    let fill = |current: &Option<String>, given: &Option<String>| current.clone().or_else(|| given.clone());
    CrmRow {
        version: before.version + 1,
        first_name: fill(&before.first_name, &c.first_name),
        last_name: fill(&before.last_name, &c.last_name),
        phone: fill(&before.phone, &c.phone),
        company: fill(&before.company, &c.company),
        job_title: fill(&before.job_title, &c.job_title),
        linkedin_url: fill(&before.linkedin_url, &c.linkedin_url),
        campaign: interest.campaign.clone().or_else(|| before.campaign.clone()),
        interest_type: Some(interest.kind.clone()),
        interest_channel: interest.channel.clone(),
        interest_message: interest.message.clone(),
        interest_at: Some(occurred_at),
        interest_count: before.interest_count + 1,
        updated_at: now,
        ..before.clone()
    }
}

/// Records a lead's interest with its event: creates the lead's row (stage `new`, count 1) or updates its
/// interest fields and counts the interest. Each write is one statement, atomic with its event; on `conn` inside a
/// transaction (an `Idempotency-Key` request) they commit with it.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn record_interest(
    conn: &mut PgConnection,
    subjects: &Subjects,
    workspace_id: Uuid,
    interest: &Interest,
    now: DateTime<Utc>,
) -> Result<Change, sqlx::Error> {
    let occurred_at = interest.occurred_at.unwrap_or(now);
    for attempt in 0.. {
        // Insert first: a new lead costs one statement.
        let change = Change { before: None, after: new_row(workspace_id, interest, occurred_at, now) };
        let event = crate::events::for_change(&change, Trigger::LeadInterest);
        if insert_with_event(conn, subjects, &change.after, &event).await? {
            return Ok(change);
        }
        let updated = if attempt >= OPTIMISTIC_TRIES {
            let mut tx = conn.begin().await?;
            let updated =
                interest_update_once(&mut tx, subjects, workspace_id, interest, occurred_at, now, true).await?;
            tx.commit().await?;
            updated
        } else {
            interest_update_once(conn, subjects, workspace_id, interest, occurred_at, now, false).await?
        };
        if let Some(change) = updated {
            return Ok(change);
        }
    }
    unreachable!("the loop only ends by returning")
}

/// One try at updating an existing lead's row; `None` when it raced with another change (or the row vanished).
async fn interest_update_once(
    db: &mut PgConnection,
    subjects: &Subjects,
    workspace_id: Uuid,
    interest: &Interest,
    occurred_at: DateTime<Utc>,
    now: DateTime<Utc>,
    lock: bool,
) -> Result<Option<Change>, sqlx::Error> {
    let Some(before) = find_by_email(db, workspace_id, &interest.email, lock).await? else { return Ok(None) };
    let after = with_interest(&before, interest, occurred_at, now);
    let expected = before.version;
    let change = Change { before: Some(before), after };
    let event = crate::events::for_change(&change, Trigger::LeadInterest);
    Ok(update_with_event(db, subjects, &change.after, expected, &event).await?.then_some(change))
}

/// Why a patch was not applied.
pub enum PatchOutcome {
    NotFound,
    /// The merged row would break a cap (`field`, why); nothing was written.
    Invalid(&'static str, String),
    Stale {
        current: i64,
    },
    Unchanged(Box<CrmRow>),
    Changed(Box<Change>),
}

/// Applies a cell edit with its event. `if_match` is the version the client last saw, when it sent one; it is
/// checked against the version the write is conditioned on, so a concurrent edit in between is a 412, not a lost
/// update.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id, row_id = %id))]
pub async fn apply_patch(
    conn: &mut PgConnection,
    subjects: &Subjects,
    workspace_id: Uuid,
    id: Uuid,
    if_match: Option<IfMatch>,
    patch: &RowPatch,
) -> Result<PatchOutcome, sqlx::Error> {
    for attempt in 0.. {
        let outcome = if attempt >= OPTIMISTIC_TRIES {
            let mut tx = conn.begin().await?;
            let outcome = patch_once(&mut tx, subjects, workspace_id, id, if_match.as_ref(), patch, true).await?;
            tx.commit().await?;
            outcome
        } else {
            patch_once(conn, subjects, workspace_id, id, if_match.as_ref(), patch, false).await?
        };
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
    unreachable!("the loop only ends by returning")
}

/// One try at a patch; `None` when it raced with another change.
async fn patch_once(
    db: &mut PgConnection,
    subjects: &Subjects,
    workspace_id: Uuid,
    id: Uuid,
    if_match: Option<&IfMatch>,
    patch: &RowPatch,
    lock: bool,
) -> Result<Option<PatchOutcome>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM crm_rows WHERE id = $1 AND workspace_id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let found: Option<DbRow> = sqlx::query_as(&sql).bind(id).bind(workspace_id).fetch_optional(&mut *db).await?;
    let Some(before) = found.map(CrmRow::from) else { return Ok(Some(PatchOutcome::NotFound)) };
    if let Some(if_match) = if_match {
        if !if_match.matches(before.version) {
            return Ok(Some(PatchOutcome::Stale { current: before.version }));
        }
    }
    let wanted = patched(&before, patch);
    if patch.custom_fields.is_some() {
        if let Err(message) = crate::domain::merged_custom_fields(&wanted.custom_fields) {
            return Ok(Some(PatchOutcome::Invalid("custom_fields", message)));
        }
    }
    if wanted == before {
        return Ok(Some(PatchOutcome::Unchanged(Box::new(before))));
    }
    let expected = before.version;
    let after = CrmRow { version: before.version + 1, updated_at: Utc::now().trunc_subsecs(6), ..wanted };
    let change = Change { before: Some(before), after };
    let event = crate::events::for_change(&change, Trigger::CrmEdit);
    let written = update_with_event(db, subjects, &change.after, expected, &event).await?;
    Ok(written.then(|| PatchOutcome::Changed(Box::new(change))))
}

/// The row as the patch would leave it, bookkeeping untouched: equal to `row` exactly when the patch is a no-op.
fn patched(row: &CrmRow, p: &RowPatch) -> CrmRow {
    let mut next = row.clone();
    fn set<T: Clone>(field: &mut T, value: &Option<T>) {
        if let Some(v) = value {
            *field = v.clone();
        }
    }
    if let Some(email) = &p.email {
        next.email = email.clone();
    }
    set(&mut next.first_name, &p.first_name);
    set(&mut next.last_name, &p.last_name);
    set(&mut next.phone, &p.phone);
    set(&mut next.company, &p.company);
    set(&mut next.job_title, &p.job_title);
    set(&mut next.linkedin_url, &p.linkedin_url);
    set(&mut next.campaign, &p.campaign);
    if let Some(stage) = p.pipeline_stage {
        next.pipeline_stage = stage;
    }
    set(&mut next.owner, &p.owner);
    set(&mut next.deal_value, &p.deal_value);
    set(&mut next.deal_currency, &p.deal_currency);
    set(&mut next.next_step_at, &p.next_step_at);
    set(&mut next.notes, &p.notes);
    if let Some(merge) = &p.custom_fields {
        for (key, value) in merge {
            if value.is_null() {
                next.custom_fields.remove(key);
            } else {
                next.custom_fields.insert(key.clone(), value.clone());
            }
        }
    }
    next
}

/// A parsed `If-Match` header: `*`, or a list of entity tags `"<version>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Versions(Vec<i64>),
}

impl IfMatch {
    /// Parses the header. Weak tags never match (RFC 9110 §13.1.1 uses strong comparison), and a tag that is not
    /// one of our versions matches nothing, so a malformed header fails the precondition rather than being ignored.
    pub fn parse(raw: &str) -> IfMatch {
        if raw.trim() == "*" {
            return IfMatch::Any;
        }
        IfMatch::Versions(
            raw.split(',').filter_map(|tag| tag.trim().strip_prefix('"')?.strip_suffix('"')?.parse().ok()).collect(),
        )
    }

    pub fn matches(&self, version: i64) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Versions(versions) => versions.contains(&version),
        }
    }
}

/// The `ETag` of a row at `version`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_uses_strong_comparison() {
        assert!(IfMatch::parse("\"3\"").matches(3));
        assert!(IfMatch::parse("\"2\", \"3\"").matches(3));
        assert!(!IfMatch::parse("\"2\"").matches(3));
        assert!(!IfMatch::parse("W/\"3\"").matches(3));
        assert!(!IfMatch::parse("3").matches(3));
        assert!(IfMatch::parse("*").matches(42));
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
