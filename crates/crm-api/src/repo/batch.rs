//! A whole batch of row changes in one statement: the new rows, the changed rows (each only if it is still at the
//! version it was read at), their outbox rows, their pending deliveries and the `Idempotency-Key`s with their
//! responses, as the data-modifying parts of one `WITH` statement that commits on its own.
//!
//! Without a transaction around it, the batch costs one round trip and one commit. Its guard
//! (`crm_batch_guard`, a migration's function) refuses the whole statement with a serialization failure
//! (SQLSTATE 40001: nothing is written) when a changed row has moved on since it was read, a new lead's email was
//! taken meanwhile, or a key is there already (a replay, or the same key in flight); the caller then writes the
//! batch in a transaction that locks what it touches.

use super::rows::{self, Arrays};
use crm_db::DeliveryStatus;
use crm_events::RowChangedEvent;
use crm_mapping::CrmRow;
use sqlx::types::Json;
use sqlx::{PgExecutor, Row};
use std::collections::HashMap;
use std::sync::LazyLock;
use uuid::Uuid;

use super::outbox::NewEvent;

/// What one statement writes.
pub struct Batch<'a> {
    /// Rows new in this batch.
    pub new: &'a [&'a CrmRow],
    /// Rows changed, each with the version it must still be at.
    pub changed: &'a [(&'a CrmRow, i64)],
    /// The events, in the order of `messages`.
    pub events: &'a [&'a RowChangedEvent],
    /// The events as the outbox carries them (without a body: each delivery holds its event's).
    pub messages: &'a [NewEvent<'a>],
    /// `Idempotency-Key`s to store with the response of their request.
    pub keys: &'a [KeyResponse<'a>],
}

/// An `Idempotency-Key` with the request it was sent with and the response to replay.
#[derive(Debug, Clone, Copy)]
pub struct KeyResponse<'a> {
    pub workspace_id: Uuid,
    pub key: &'a str,
    pub request_hash: &'a [u8],
    pub status: u16,
    pub body: &'a [u8],
}

/// The statement, with its parameters numbered: the new rows' columns, the changed rows' columns and expected
/// versions, then the outbox, the deliveries and the keys.
static WRITE: LazyLock<String> = LazyLock::new(|| {
    let update = 1 + rows::INSERT_PARAMS;
    let o = update + rows::UPDATE_PARAMS;
    let (d, k) = (o + 3, o + 7);
    format!(
        "WITH ins AS ({insert}),
              upd AS ({update_sql}),
              ob AS (INSERT INTO outbox (msg_id, subject, headers)
                     SELECT * FROM unnest(${o}::uuid[], ${o1}::text[], ${o2}::jsonb[])
                     RETURNING seq, msg_id),
              dl AS (INSERT INTO deliveries (id, workspace_id, event_type, row_id, status, event)
                     SELECT id, ws, ty, row_id, '{pending}', event
                       FROM unnest(${o}::uuid[], ${d}::uuid[], ${d1}::text[], ${d2}::uuid[], ${d3}::bytea[])
                         AS t(id, ws, ty, row_id, event)
                     ON CONFLICT (id) DO NOTHING),
              keys AS (INSERT INTO idempotency_keys (workspace_id, key, request_hash, status_code, response_body)
                       SELECT * FROM unnest(${k}::uuid[], ${k1}::text[], ${k2}::bytea[], ${k3}::int2[], ${k4}::bytea[])
                       ON CONFLICT (workspace_id, key) DO NOTHING
                       RETURNING 1)
         SELECT crm_batch_guard((SELECT count(*) FROM ins) = cardinality($1::uuid[])
                            AND (SELECT count(*) FROM upd) = cardinality(${update}::uuid[])
                            AND (SELECT count(*) FROM keys) = cardinality(${k}::uuid[])) AS ok,
                ARRAY(SELECT seq FROM ob) AS seqs, ARRAY(SELECT msg_id FROM ob) AS ids",
        insert = rows::insert_sql(1),
        update_sql = rows::update_sql(update),
        o1 = o + 1,
        o2 = o + 2,
        d1 = d + 1,
        d2 = d + 2,
        d3 = d + 3,
        k1 = k + 1,
        k2 = k + 2,
        k3 = k + 3,
        k4 = k + 4,
        pending = DeliveryStatus::Pending.as_str(),
    )
});

/// Writes `batch` in one statement, committed when it returns `Ok` (on a connection outside a transaction).
/// Returns each event's outbox sequence number, by event id. `Err` with SQLSTATE 40001 when the guard refused it.
pub async fn write(db: impl PgExecutor<'_>, batch: &Batch<'_>) -> Result<HashMap<Uuid, i64>, sqlx::Error> {
    let mut query = Arrays::of(batch.new).bind(sqlx::query(&WRITE));
    let states: Vec<&CrmRow> = batch.changed.iter().map(|(row, _)| *row).collect();
    let expected: Vec<i64> = batch.changed.iter().map(|(_, v)| *v).collect();
    query = Arrays::of(&states).bind(query).bind(expected);
    let m = batch.messages;
    query = query
        .bind(m.iter().map(|e| e.msg_id).collect::<Vec<_>>())
        .bind(m.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>())
        .bind(m.iter().map(|e| Json(e.headers)).collect::<Vec<_>>());
    let e = batch.events;
    query = query
        .bind(e.iter().map(|e| e.workspace_id).collect::<Vec<_>>())
        .bind(e.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
        .bind(e.iter().map(|e| e.row.as_ref().map(|r| r.id)).collect::<Vec<_>>())
        .bind(m.iter().map(|e| e.payload.as_slice()).collect::<Vec<_>>());
    let k = batch.keys;
    query = query
        .bind(k.iter().map(|k| k.workspace_id).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.key).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.request_hash).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.status as i16).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.body).collect::<Vec<_>>());
    let row = query.fetch_one(db).await?;
    let seqs: Vec<i64> = row.try_get("seqs")?;
    let ids: Vec<Uuid> = row.try_get("ids")?;
    Ok(ids.into_iter().zip(seqs).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_is_numbered_once_in_order() {
        let last = 1 + rows::INSERT_PARAMS + rows::UPDATE_PARAMS + 3 + 4 + 5 - 1;
        for n in 1..=last {
            assert!(WRITE.contains(&format!("${n}::")), "${n} is missing");
        }
        assert!(!WRITE.contains(&format!("${}::", last + 1)), "${} is one too many", last + 1);
    }
}
