//! SQL of `crm_rows`.
//!
//! A row crosses the boundary as JSON in the shape of [`CrmRow`]: read with `crm_row_json(r)` and written with
//! `jsonb_populate_record(NULL::crm_rows, …)`, so no statement here lists the row's columns and a field added to
//! the row (and its column, by a migration) needs no change here. A write changes the row and enqueues its event
//! in one statement: atomic without an explicit transaction, and one round trip.

use super::outbox::NewEvent;
use crm_mapping::{CrmRow, PipelineStage, FIELDS};
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use std::sync::LazyLock;
use uuid::Uuid;

#[tracing::instrument(skip(db))]
pub async fn get(db: impl PgExecutor<'_>, workspace_id: Uuid, id: Uuid) -> Result<Option<CrmRow>, sqlx::Error> {
    let row = sqlx::query_scalar!(
        r#"SELECT crm_row_json(r) AS "row!: Json<CrmRow>" FROM crm_rows r WHERE id = $1 AND workspace_id = $2"#,
        id,
        workspace_id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|Json(row)| row))
}

/// Reads a row to change it, taking its lock when `lock` (inside the caller's transaction).
pub async fn find(
    conn: &mut PgConnection,
    workspace_id: Uuid,
    id: Uuid,
    lock: bool,
) -> Result<Option<CrmRow>, sqlx::Error> {
    let row = if lock {
        sqlx::query_scalar!(
            r#"SELECT crm_row_json(r) AS "row!: Json<CrmRow>" FROM crm_rows r
                WHERE id = $1 AND workspace_id = $2 FOR UPDATE"#,
            id,
            workspace_id
        )
        .fetch_optional(conn)
        .await?
    } else {
        sqlx::query_scalar!(
            r#"SELECT crm_row_json(r) AS "row!: Json<CrmRow>" FROM crm_rows r WHERE id = $1 AND workspace_id = $2"#,
            id,
            workspace_id
        )
        .fetch_optional(conn)
        .await?
    };
    Ok(row.map(|Json(row)| row))
}

/// Reads a lead's row by email (case-insensitively), taking its lock when `lock`.
pub async fn find_by_email(
    conn: &mut PgConnection,
    workspace_id: Uuid,
    email: &str,
    lock: bool,
) -> Result<Option<CrmRow>, sqlx::Error> {
    let row = if lock {
        sqlx::query_scalar!(
            r#"SELECT crm_row_json(r) AS "row!: Json<CrmRow>" FROM crm_rows r
                WHERE workspace_id = $1 AND lower(email) = lower($2) FOR UPDATE"#,
            workspace_id,
            email
        )
        .fetch_optional(conn)
        .await?
    } else {
        sqlx::query_scalar!(
            r#"SELECT crm_row_json(r) AS "row!: Json<CrmRow>" FROM crm_rows r
                WHERE workspace_id = $1 AND lower(email) = lower($2)"#,
            workspace_id,
            email
        )
        .fetch_optional(conn)
        .await?
    };
    Ok(row.map(|Json(row)| row))
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
    let pattern = f.q.as_deref().map(|q| format!("%{}%", escape_like(q)));
    let rows = sqlx::query_scalar!(
        r#"SELECT crm_row_json(r) AS "row!: Json<CrmRow>" FROM crm_rows r
            WHERE workspace_id = $1
              AND ($2::uuid IS NULL OR id < $2)
              AND ($3::text IS NULL OR pipeline_stage = $3)
              AND ($4::text IS NULL OR email ILIKE $4 OR first_name ILIKE $4 OR last_name ILIKE $4
                   OR company ILIKE $4)
            ORDER BY id DESC
            LIMIT $5"#,
        workspace_id,
        f.before,
        f.stage.map(PipelineStage::as_str),
        pattern,
        f.limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|Json(row)| row).collect())
}

fn escape_like(q: &str) -> String {
    q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Inserts a new row and its event in one statement. Returns false (and writes nothing) when the workspace
/// already has a row with this email.
pub async fn insert_with_event(
    conn: &mut PgConnection,
    row: &CrmRow,
    event: &NewEvent<'_>,
) -> Result<bool, sqlx::Error> {
    let seq = sqlx::query_scalar!(
        "WITH row AS (
             INSERT INTO crm_rows SELECT * FROM jsonb_populate_record(NULL::crm_rows, $1)
             ON CONFLICT (workspace_id, lower(email)) DO NOTHING
             RETURNING id
         )
         INSERT INTO outbox (msg_id, subject, payload, headers) SELECT $2, $3, $4, $5 FROM row RETURNING seq",
        Json(row) as _,
        event.msg_id,
        event.subject,
        event.payload,
        Json(event.headers) as _
    )
    .fetch_optional(conn)
    .await?;
    Ok(seq.is_some())
}

/// `UPDATE crm_rows … SET` every column but the row's identity from the row given as JSON (`$1`), if the row is
/// still at version `$2`; then the event's outbox row (`$3`..`$6`). Built once from the field list, so it names
/// every column without this file spelling them out.
static UPDATE_WITH_EVENT: LazyLock<String> = LazyLock::new(|| {
    let set = FIELDS
        .iter()
        .map(|f| f.name)
        .filter(|name| !matches!(*name, "id" | "workspace_id" | "created_at"))
        .map(|name| format!("{name} = s.{name}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH row AS (
             UPDATE crm_rows t SET {set}
               FROM jsonb_populate_record(NULL::crm_rows, $1) s
              WHERE t.id = s.id AND t.workspace_id = s.workspace_id AND t.version = $2
             RETURNING t.id
         )
         INSERT INTO outbox (msg_id, subject, payload, headers) SELECT $3, $4, $5, $6 FROM row RETURNING seq"
    )
});

/// Writes a row's new state and its event in one statement, if the row is still at `expected_version`
/// (optimistic concurrency: no lock is held between reading the row and writing it). Returns false when another
/// change got there first.
pub async fn update_with_event(
    conn: &mut PgConnection,
    row: &CrmRow,
    expected_version: i64,
    event: &NewEvent<'_>,
) -> Result<bool, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar(&UPDATE_WITH_EVENT)
        .bind(Json(row))
        .bind(expected_version)
        .bind(event.msg_id)
        .bind(&event.subject)
        .bind(&event.payload)
        .bind(Json(event.headers))
        .fetch_optional(conn)
        .await?;
    Ok(seq.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }

    #[test]
    fn the_update_sets_every_field_but_the_identity() {
        let set_clause = UPDATE_WITH_EVENT.split(" SET ").nth(1).and_then(|s| s.split(" FROM ").next()).unwrap_or("");
        let assigned: Vec<&str> = set_clause.split(',').map(|a| a.trim()).collect();
        for field in FIELDS {
            let set = assigned.contains(&format!("{0} = s.{0}", field.name).as_str());
            assert_eq!(set, !matches!(field.name, "id" | "workspace_id" | "created_at"), "{}", field.name);
        }
    }
}
