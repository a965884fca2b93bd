//! `Idempotency-Key` for the interest upsert: a retried request returns the first response and changes nothing.
//!
//! The key is inserted in the same transaction as the change it guards. A concurrent request with the same key
//! waits on that row's lock and then finds the stored response; a failed request rolls back its key with its
//! change, so retrying it works. A key reused with a different body is refused (422), as the IETF
//! `Idempotency-Key` draft recommends.

use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

/// What a key holds once its request has completed.
pub struct Stored {
    pub request_hash: Vec<u8>,
    pub status: u16,
    pub body: Vec<u8>,
}

pub fn request_hash(body: &[u8]) -> Vec<u8> {
    Sha256::digest(body).to_vec()
}

/// Claims `key` for this request. `None`: the key is new and now ours (within this transaction). `Some`: an
/// earlier request used it.
pub async fn claim(
    tx: &mut PgConnection,
    workspace_id: Uuid,
    key: &str,
    hash: &[u8],
) -> Result<Option<Stored>, sqlx::Error> {
    let inserted = sqlx::query!(
        "INSERT INTO idempotency_keys (workspace_id, key, request_hash) VALUES ($1, $2, $3)
         ON CONFLICT (workspace_id, key) DO NOTHING",
        workspace_id,
        key,
        hash
    )
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(None);
    }
    let row = sqlx::query!(
        "SELECT request_hash, status_code, response_body FROM idempotency_keys WHERE workspace_id = $1 AND key = $2",
        workspace_id,
        key
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(Some(Stored {
        request_hash: row.request_hash,
        status: row.status_code.unwrap_or(200) as u16,
        body: row.response_body.unwrap_or_default(),
    }))
}

pub async fn complete(
    tx: &mut PgConnection,
    workspace_id: Uuid,
    key: &str,
    status: u16,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE idempotency_keys SET status_code = $3, response_body = $4 WHERE workspace_id = $1 AND key = $2",
        workspace_id,
        key,
        status as i16,
        body
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Forgets keys older than 24 hours.
pub async fn expire(db: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    let done =
        sqlx::query!("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'").execute(db).await?;
    Ok(done.rows_affected())
}
