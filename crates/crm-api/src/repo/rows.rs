//! SQL of `crm_rows`.
//!
//! No statement here spells out the row's columns: the column list, the array types of a multi-row write and the
//! values are all derived from `crm-mapping`'s field list ([`crm_mapping::FIELDS`], read and written through
//! `CrmRow::read_columns` / `write_columns`). Writes take many rows at once (`unnest` of one array per column),
//! so a batch of changes costs one statement per kind, not one per row.

use crm_mapping::columns::{ColumnSink, ColumnSource};
use crm_mapping::{CrmRow, Kind, PipelineStage, FIELDS};
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor, Postgres, Row};
use std::sync::LazyLock;
use uuid::Uuid;

/// The PostgreSQL type a field's values travel as.
fn array_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Uuid => "uuid[]",
        Kind::Integer { .. } => "int8[]",
        Kind::Timestamp => "timestamptz[]",
        Kind::Object => "jsonb[]",
        // The decimal travels as text and is cast to its numeric column.
        _ => "text[]",
    }
}

/// The select list: every column in field order, the decimal as its text (numeric keeps the scale it was given).
static SELECT_LIST: LazyLock<String> = LazyLock::new(|| {
    FIELDS
        .iter()
        .map(|f| if f.kind == Kind::Decimal { format!("{0}::text AS {0}", f.name) } else { f.name.to_owned() })
        .collect::<Vec<_>>()
        .join(", ")
});

/// `unnest($first::uuid[], …) AS t(id, …)`: one array parameter per column, then the `extra` ones (name, array
/// type), numbered from `$first`.
fn unnest(first: usize, extra: &[(&str, &str)]) -> String {
    let mut arrays: Vec<String> = FIELDS.iter().map(|f| array_type(f.kind).to_owned()).collect();
    let mut names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
    for (name, ty) in extra {
        arrays.push((*ty).to_owned());
        names.push(name);
    }
    let params: Vec<String> = arrays.iter().enumerate().map(|(i, ty)| format!("${}::{ty}", first + i)).collect();
    format!("unnest({}) AS t({})", params.join(", "), names.join(", "))
}

/// `t.col` for every column, the decimal cast back to numeric.
fn from_t() -> String {
    FIELDS
        .iter()
        .map(|f| if f.kind == Kind::Decimal { format!("t.{}::numeric", f.name) } else { format!("t.{}", f.name) })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parameters an [`insert_sql`] statement takes: one array per column.
pub(super) const INSERT_PARAMS: usize = FIELDS.len();
/// Parameters an [`update_sql`] statement takes: one array per column, then the expected versions.
pub(super) const UPDATE_PARAMS: usize = FIELDS.len() + 1;

/// Inserts rows (`$first`.. one array per column); a row whose email the workspace has already is left out.
/// Returns the ids inserted.
pub(super) fn insert_sql(first: usize) -> String {
    let columns: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
    format!(
        "INSERT INTO crm_rows ({}) SELECT {} FROM {} ON CONFLICT (workspace_id, lower(email)) DO NOTHING RETURNING id",
        columns.join(", "),
        from_t(),
        unnest(first, &[])
    )
}

/// Writes rows' new states (`$first`.. one array per column, then the versions they must still be at). Every
/// column but the identity. Returns the ids written.
pub(super) fn update_sql(first: usize) -> String {
    let set = FIELDS
        .iter()
        .filter(|f| !matches!(f.name, "id" | "workspace_id" | "created_at"))
        .map(|f| {
            if f.kind == Kind::Decimal {
                format!("{0} = t.{0}::numeric", f.name)
            } else {
                format!("{0} = t.{0}", f.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    // `r.id = ANY($first)` (the ids again, as the first array) makes the rows an index scan whatever the planner
    // thinks of the arrays' lengths.
    format!(
        "UPDATE crm_rows r SET {set} FROM {}
          WHERE r.id = ANY(${first}) AND r.id = t.id AND r.workspace_id = t.workspace_id AND r.version = t.expected
          RETURNING r.id",
        unnest(first, &[("expected", "int8[]")])
    )
}

static INSERT: LazyLock<String> = LazyLock::new(|| insert_sql(1));
static UPDATE: LazyLock<String> = LazyLock::new(|| update_sql(1));

/// A stored row's columns, for `CrmRow::read_columns`.
struct Stored<'r>(&'r PgRow);

impl ColumnSource for Stored<'_> {
    type Error = sqlx::Error;

    fn uuid(&self, i: usize) -> Result<Uuid, sqlx::Error> {
        self.0.try_get(i)
    }
    fn int(&self, i: usize) -> Result<i64, sqlx::Error> {
        self.0.try_get(i)
    }
    fn text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        self.0.try_get(i)
    }
    fn timestamp(&self, i: usize) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
        self.0.try_get(i)
    }
    fn object(&self, i: usize) -> Result<Map<String, Value>, sqlx::Error> {
        self.0.try_get::<Json<Map<String, Value>>, _>(i).map(|Json(map)| map)
    }
    fn invalid(&self, i: usize, why: &str) -> sqlx::Error {
        sqlx::Error::ColumnDecode { index: FIELDS[i].name.to_owned(), source: why.into() }
    }
}

fn decode(row: &PgRow) -> Result<CrmRow, sqlx::Error> {
    CrmRow::read_columns(&Stored(row))
}

/// Rows to write, one array per column; text and objects borrowed from the rows, not copied.
enum Values<'r> {
    Uuids(Vec<Uuid>),
    Ints(Vec<i64>),
    Texts(Vec<Option<&'r str>>),
    Times(Vec<Option<chrono::DateTime<chrono::Utc>>>),
    Objects(Vec<Json<&'r Map<String, Value>>>),
}

pub(super) struct Arrays<'r>(Vec<Values<'r>>);

impl<'r> Arrays<'r> {
    pub(super) fn of(rows: &[&'r CrmRow]) -> Arrays<'r> {
        let n = rows.len();
        let mut arrays = Arrays(
            FIELDS
                .iter()
                .map(|f| match f.kind {
                    Kind::Uuid => Values::Uuids(Vec::with_capacity(n)),
                    Kind::Integer { .. } => Values::Ints(Vec::with_capacity(n)),
                    Kind::Timestamp => Values::Times(Vec::with_capacity(n)),
                    Kind::Object => Values::Objects(Vec::with_capacity(n)),
                    _ => Values::Texts(Vec::with_capacity(n)),
                })
                .collect(),
        );
        for row in rows {
            row.write_columns(&mut arrays);
        }
        arrays
    }

    pub(super) fn bind<'q>(
        self,
        mut query: Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> Query<'q, Postgres, sqlx::postgres::PgArguments>
    where
        'r: 'q,
    {
        for values in self.0 {
            query = match values {
                Values::Uuids(v) => query.bind(v),
                Values::Ints(v) => query.bind(v),
                Values::Texts(v) => query.bind(v),
                Values::Times(v) => query.bind(v),
                Values::Objects(v) => query.bind(v),
            };
        }
        query
    }
}

impl<'r> ColumnSink<'r> for Arrays<'r> {
    fn uuid(&mut self, i: usize, value: Uuid) {
        if let Values::Uuids(v) = &mut self.0[i] {
            v.push(value);
        }
    }
    fn int(&mut self, i: usize, value: i64) {
        if let Values::Ints(v) = &mut self.0[i] {
            v.push(value);
        }
    }
    fn text(&mut self, i: usize, value: Option<&'r str>) {
        if let Values::Texts(v) = &mut self.0[i] {
            v.push(value);
        }
    }
    fn timestamp(&mut self, i: usize, value: Option<chrono::DateTime<chrono::Utc>>) {
        if let Values::Times(v) = &mut self.0[i] {
            v.push(value);
        }
    }
    fn object(&mut self, i: usize, value: &'r Map<String, Value>) {
        if let Values::Objects(v) = &mut self.0[i] {
            v.push(Json(value));
        }
    }
}

#[tracing::instrument(skip(db))]
pub async fn get(db: impl PgExecutor<'_>, workspace_id: Uuid, id: Uuid) -> Result<Option<CrmRow>, sqlx::Error> {
    let sql = format!("SELECT {} FROM crm_rows WHERE id = $1 AND workspace_id = $2", *SELECT_LIST);
    let row = sqlx::query(&sql).bind(id).bind(workspace_id).fetch_optional(db).await?;
    row.as_ref().map(decode).transpose()
}

/// The ids of the rows a batch of changes is about: those of `emails` (workspace, email; matched
/// case-insensitively) and those of `ids` (workspace, row id).
///
/// The pairs are joined to the table one index probe each (a nested loop over the arrays), where the pairs as
/// `(a, b) IN (SELECT ... unnest)` or as two `= ANY` arrays may be planned as a scan of the whole table or a probe
/// per combination of the two arrays.
const FIND_FOR_CHANGE: &str = "SELECT r.id FROM unnest($1::uuid[], $2::text[]) AS t(ws, e)
                                 JOIN crm_rows r ON r.workspace_id = t.ws AND lower(r.email) = lower(t.e)
                               UNION ALL
                               SELECT r.id FROM unnest($3::uuid[], $4::uuid[]) AS u(ws, i)
                                 JOIN crm_rows r ON r.id = u.i AND r.workspace_id = u.ws";

/// The rows of [`FIND_FOR_CHANGE`], read in the same joins (a row both branches find comes twice). Its shape is
/// kept plain: the de-duplication and the sort by id of its first form (`WHERE id IN (…) ORDER BY id`: a semi-join,
/// a second probe of each row and a sort) are done by [`read_for_change`]. The writers' pool caches its plan, which
/// PostgreSQL makes again whenever `crm_rows` is analysed (see `service_common::db::connect_key_lookups`).
static READ_FOR_CHANGE: LazyLock<String> = LazyLock::new(|| {
    let list = &*SELECT_LIST;
    format!(
        "SELECT {list} FROM unnest($1::uuid[], $2::text[]) AS t(ws, e)
           JOIN crm_rows r ON r.workspace_id = t.ws AND lower(r.email) = lower(t.e)
         UNION ALL
         SELECT {list} FROM unnest($3::uuid[], $4::uuid[]) AS u(ws, i)
           JOIN crm_rows r ON r.id = u.i AND r.workspace_id = u.ws"
    )
});

/// Rows by id, locked, in id order.
static LOCK_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM crm_rows WHERE id = ANY($1) ORDER BY id FOR UPDATE", *SELECT_LIST));

/// A statement over the batch's targets: `$1`/`$2` the emails' workspaces and addresses, `$3`/`$4` the ids'.
fn with_targets<'q>(
    sql: &'q str,
    emails: &'q [(Uuid, String)],
    ids: &[(Uuid, Uuid)],
) -> Query<'q, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(emails.iter().map(|(ws, _)| *ws).collect::<Vec<_>>())
        .bind(emails.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>())
        .bind(ids.iter().map(|(ws, _)| *ws).collect::<Vec<_>>())
        .bind(ids.iter().map(|(_, id)| *id).collect::<Vec<_>>())
}

/// The rows a batch of changes is about (see [`FIND_FOR_CHANGE`]), as they are now, without locking them: a write
/// based on them checks each row's version ([`crate::repo::batch`]). In id order, each row once, however many of
/// the batch's changes name it.
pub async fn read_for_change(
    db: impl PgExecutor<'_>,
    emails: &[(Uuid, String)],
    ids: &[(Uuid, Uuid)],
) -> Result<Vec<CrmRow>, sqlx::Error> {
    if emails.is_empty() && ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = with_targets(&READ_FOR_CHANGE, emails, ids).fetch_all(db).await?;
    let mut rows = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    rows.sort_unstable_by_key(|row| row.id);
    rows.dedup_by_key(|row| row.id);
    Ok(rows)
}

/// The rows a batch of changes is about (see [`FIND_FOR_CHANGE`]), locked for the caller's transaction in id order
/// (so two batches that share rows lock them in the same order), each in its latest committed version.
///
/// Two statements: the ids first, then the rows locked by id alone. With `FOR UPDATE`, a row another transaction
/// changes meanwhile is waited for and then checked again, in its new version, against the statement's condition.
/// Against `id = ANY($1)` that always holds; against a condition that joins the table to itself again (the lookup
/// by email or by workspace and id) PostgreSQL could drop the row from the result, and the change of a row that a
/// concurrent batch had just changed would answer 404 (seen under load in one workspace).
pub async fn lock_for_change(
    tx: &mut PgConnection,
    emails: &[(Uuid, String)],
    ids: &[(Uuid, Uuid)],
) -> Result<Vec<CrmRow>, sqlx::Error> {
    if emails.is_empty() && ids.is_empty() {
        return Ok(Vec::new());
    }
    let found = with_targets(FIND_FOR_CHANGE, emails, ids).fetch_all(&mut *tx).await?;
    let found: Vec<Uuid> = found.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
    let rows = sqlx::query(&LOCK_BY_ID).bind(found).fetch_all(&mut *tx).await?;
    rows.iter().map(decode).collect()
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
    let sql = format!("SELECT {} FROM crm_rows WHERE {LIST_FILTER} ORDER BY id DESC LIMIT $5", *SELECT_LIST);
    let rows = sqlx::query(&sql)
        .bind(workspace_id)
        .bind(f.before)
        .bind(f.stage.map(PipelineStage::as_str))
        .bind(f.pattern())
        .bind(f.limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(decode).collect()
}

/// The rows of a list's filter: `$1` the workspace, `$2` the cursor, `$3` the stage, `$4` the search pattern.
const LIST_FILTER: &str = "workspace_id = $1
            AND ($2::uuid IS NULL OR id < $2)
            AND ($3::text IS NULL OR pipeline_stage = $3)
            AND ($4::text IS NULL OR email ILIKE $4 OR first_name ILIKE $4 OR last_name ILIKE $4 OR company ILIKE $4)";

impl ListFilter {
    fn pattern(&self) -> Option<String> {
        self.q.as_deref().map(|q| format!("%{}%", escape_like(q)))
    }
}

/// How many rows the list's filter matches in all (its cursor and limit aside).
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id, stage = ?f.stage, search = f.q.is_some()))]
pub async fn count(db: impl PgExecutor<'_>, workspace_id: Uuid, f: &ListFilter) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!("SELECT count(*) FROM crm_rows WHERE {LIST_FILTER}"))
        .bind(workspace_id)
        .bind(None::<Uuid>)
        .bind(f.stage.map(PipelineStage::as_str))
        .bind(f.pattern())
        .fetch_one(db)
        .await
}

fn escape_like(q: &str) -> String {
    q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Inserts new rows; a row whose email its workspace already has (another writer got there first) is left out.
/// Returns the ids inserted.
pub async fn insert(conn: &mut PgConnection, rows: &[&CrmRow]) -> Result<Vec<Uuid>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let query = Arrays::of(rows).bind(sqlx::query(&INSERT));
    let inserted = query.fetch_all(conn).await?;
    inserted.iter().map(|r| r.try_get(0)).collect()
}

/// Writes rows' new states, each if it is still at its `expected` version. Returns the ids written.
pub async fn update(conn: &mut PgConnection, rows: &[(&CrmRow, i64)]) -> Result<Vec<Uuid>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let states: Vec<&CrmRow> = rows.iter().map(|(row, _)| *row).collect();
    let expected: Vec<i64> = rows.iter().map(|(_, v)| *v).collect();
    let query = Arrays::of(&states).bind(sqlx::query(&UPDATE)).bind(expected);
    let written = query.fetch_all(conn).await?;
    written.iter().map(|r| r.try_get(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }

    #[test]
    fn the_statements_name_every_field_once() {
        let set_clause = UPDATE.split(" SET ").nth(1).and_then(|s| s.split(" FROM ").next()).unwrap_or("");
        let assigned: Vec<&str> = set_clause.split(", ").map(|a| a.trim()).collect();
        for field in FIELDS {
            assert!(SELECT_LIST.contains(field.name), "{}", field.name);
            assert!(INSERT.contains(&format!("t.{}", field.name)), "{}", field.name);
            let set = assigned.iter().any(|a| a.starts_with(&format!("{0} = t.{0}", field.name)));
            assert_eq!(set, !matches!(field.name, "id" | "workspace_id" | "created_at"), "{}", field.name);
        }
        assert_eq!(UPDATE.matches("::int8[]").count(), 3, "version, interest_count and the expected versions");
    }
}
