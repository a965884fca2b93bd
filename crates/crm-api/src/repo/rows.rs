//! CRM rows: reads, the lead-interest upsert and the sheet's cell edit.
//!
//! Every write runs in the caller's transaction and returns the change it made (old and new row), so the caller
//! can enqueue the event in the same transaction. A write that changes nothing returns no change and the caller
//! enqueues nothing.

use crate::domain::{Contact, Interest, RowPatch};
use chrono::{DateTime, Utc};
use crm_mapping::{CrmRow, PipelineStage, ROW_FIELDS};
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
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

/// Newest first. Ids are UUIDv7, so `id DESC` is creation order and the id is the cursor.
#[tracing::instrument(skip(db))]
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

async fn lock_by_email(tx: &mut PgConnection, workspace_id: Uuid, email: &str) -> Result<Option<CrmRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM crm_rows WHERE workspace_id = $1 AND lower(email) = lower($2) FOR UPDATE");
    let row: Option<DbRow> = sqlx::query_as(&sql).bind(workspace_id).bind(email).fetch_optional(tx).await?;
    Ok(row.map(CrmRow::from))
}

/// Records a lead's interest: creates the lead's row (stage `new`, count 1) or updates its interest fields and
/// counts the interest. Contact fields only fill empty ones; a given campaign replaces the current one.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn record_interest(
    tx: &mut PgConnection,
    workspace_id: Uuid,
    interest: &Interest,
    now: DateTime<Utc>,
) -> Result<Change, sqlx::Error> {
    let occurred_at = interest.occurred_at.unwrap_or(now);
    // Insert first: a new lead costs one statement. On conflict the lead exists; lock it and update. A row
    // deleted between the two (not something the API does) would send us round once more.
    for _ in 0..2 {
        let c: &Contact = &interest.contact;
        let sql = format!(
            "INSERT INTO crm_rows (id, workspace_id, email, first_name, last_name, phone, company, job_title,
                 linkedin_url, campaign, interest_type, interest_channel, interest_message, interest_at,
                 interest_count, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15, $15)
             ON CONFLICT (workspace_id, lower(email)) DO NOTHING
             RETURNING {COLUMNS}"
        );
        let inserted: Option<DbRow> = sqlx::query_as(&sql)
            .bind(Uuid::now_v7())
            .bind(workspace_id)
            .bind(&interest.email)
            .bind(&c.first_name)
            .bind(&c.last_name)
            .bind(&c.phone)
            .bind(&c.company)
            .bind(&c.job_title)
            .bind(&c.linkedin_url)
            .bind(&interest.campaign)
            .bind(&interest.kind)
            .bind(&interest.channel)
            .bind(&interest.message)
            .bind(occurred_at)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = inserted {
            return Ok(Change { before: None, after: row.into() });
        }
        if let Some(before) = lock_by_email(tx, workspace_id, &interest.email).await? {
            let after = update_interest(tx, &before, interest, occurred_at).await?;
            return Ok(Change { before: Some(before), after });
        }
    }
    Err(sqlx::Error::Protocol("interest upsert found neither a row to update nor room to insert".into()))
}

async fn update_interest(
    tx: &mut PgConnection,
    before: &CrmRow,
    interest: &Interest,
    occurred_at: DateTime<Utc>,
) -> Result<CrmRow, sqlx::Error> {
    let c = &interest.contact;
    let sql = format!(
        "UPDATE crm_rows SET
             first_name = coalesce(first_name, $2), last_name = coalesce(last_name, $3),
             phone = coalesce(phone, $4), company = coalesce(company, $5), job_title = coalesce(job_title, $6),
             linkedin_url = coalesce(linkedin_url, $7), campaign = coalesce($8, campaign),
             interest_type = $9, interest_channel = $10, interest_message = $11, interest_at = $12,
             interest_count = interest_count + 1, version = version + 1, updated_at = now()
         WHERE id = $1
         RETURNING {COLUMNS}"
    );
    let row: DbRow = sqlx::query_as(&sql)
        .bind(before.id)
        .bind(&c.first_name)
        .bind(&c.last_name)
        .bind(&c.phone)
        .bind(&c.company)
        .bind(&c.job_title)
        .bind(&c.linkedin_url)
        .bind(&interest.campaign)
        .bind(&interest.kind)
        .bind(&interest.channel)
        .bind(&interest.message)
        .bind(occurred_at)
        .fetch_one(tx)
        .await?;
    Ok(row.into())
}

/// Why a patch was not applied.
pub enum PatchOutcome {
    NotFound,
    Stale { current: i64 },
    Unchanged(Box<CrmRow>),
    Changed(Box<Change>),
}

/// Applies a cell edit under the row's lock. `if_match` is the version the client last saw, when it sent one.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id, row_id = %id))]
pub async fn apply_patch(
    tx: &mut PgConnection,
    workspace_id: Uuid,
    id: Uuid,
    if_match: Option<IfMatch>,
    patch: &RowPatch,
) -> Result<PatchOutcome, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM crm_rows WHERE id = $1 AND workspace_id = $2 FOR UPDATE");
    let Some(before): Option<DbRow> = sqlx::query_as(&sql).bind(id).bind(workspace_id).fetch_optional(&mut *tx).await?
    else {
        return Ok(PatchOutcome::NotFound);
    };
    let before = CrmRow::from(before);
    if let Some(if_match) = if_match {
        if !if_match.matches(before.version) {
            return Ok(PatchOutcome::Stale { current: before.version });
        }
    }
    let wanted = patched(&before, patch);
    if wanted == before {
        return Ok(PatchOutcome::Unchanged(Box::new(before)));
    }
    let sql = format!(
        "UPDATE crm_rows SET email = $2, first_name = $3, last_name = $4, phone = $5, company = $6, job_title = $7,
             linkedin_url = $8, campaign = $9, pipeline_stage = $10, owner = $11, deal_value = $12::numeric,
             deal_currency = $13, next_step_at = $14, notes = $15, custom_fields = $16,
             version = version + 1, updated_at = now()
         WHERE id = $1
         RETURNING {COLUMNS}"
    );
    let after: DbRow = sqlx::query_as(&sql)
        .bind(id)
        .bind(&wanted.email)
        .bind(&wanted.first_name)
        .bind(&wanted.last_name)
        .bind(&wanted.phone)
        .bind(&wanted.company)
        .bind(&wanted.job_title)
        .bind(&wanted.linkedin_url)
        .bind(&wanted.campaign)
        .bind(wanted.pipeline_stage.as_str())
        .bind(&wanted.owner)
        .bind(&wanted.deal_value)
        .bind(&wanted.deal_currency)
        .bind(wanted.next_step_at)
        .bind(&wanted.notes)
        .bind(Json(&wanted.custom_fields))
        .fetch_one(&mut *tx)
        .await?;
    Ok(PatchOutcome::Changed(Box::new(Change { before: Some(before), after: after.into() })))
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
