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

/// Claims many keys in one statement; returns those that were new (and are now this transaction's). A key
/// another transaction is claiming right now waits for it to end.
pub async fn claim_many(
    tx: &mut PgConnection,
    keys: &[(Uuid, &str, &[u8])],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let workspaces: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
    let names: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let hashes: Vec<&[u8]> = keys.iter().map(|k| k.2).collect();
    let claimed = sqlx::query!(
        "INSERT INTO idempotency_keys (workspace_id, key, request_hash)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])
         ON CONFLICT (workspace_id, key) DO NOTHING
         RETURNING workspace_id, key",
        &workspaces,
        &names as &[&str],
        &hashes as &[&[u8]]
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(claimed.into_iter().map(|r| (r.workspace_id, r.key)).collect())
}

/// What earlier requests stored under these keys.
pub async fn stored_many(
    tx: &mut PgConnection,
    keys: &[(Uuid, &str)],
) -> Result<Vec<(Uuid, String, Stored)>, sqlx::Error> {
    let workspaces: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
    let names: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let rows = sqlx::query!(
        "SELECT i.workspace_id, i.key, i.request_hash, i.status_code, i.response_body
           FROM idempotency_keys i JOIN unnest($1::uuid[], $2::text[]) AS t(ws, k) ON i.workspace_id = t.ws AND i.key = t.k",
        &workspaces,
        &names as &[&str]
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let stored = Stored {
                request_hash: r.request_hash,
                status: r.status_code.unwrap_or(200) as u16,
                body: r.response_body.unwrap_or_default(),
            };
            (r.workspace_id, r.key, stored)
        })
        .collect())
}

/// Stores the responses of the requests that claimed these keys.
pub async fn complete_many(tx: &mut PgConnection, done: &[(Uuid, &str, u16, &[u8])]) -> Result<(), sqlx::Error> {
    if done.is_empty() {
        return Ok(());
    }
    let workspaces: Vec<Uuid> = done.iter().map(|d| d.0).collect();
    let names: Vec<&str> = done.iter().map(|d| d.1).collect();
    let statuses: Vec<i16> = done.iter().map(|d| d.2 as i16).collect();
    let bodies: Vec<&[u8]> = done.iter().map(|d| d.3).collect();
    sqlx::query!(
        "UPDATE idempotency_keys i SET status_code = t.status, response_body = t.body
           FROM unnest($1::uuid[], $2::text[], $3::int2[], $4::bytea[]) AS t(ws, k, status, body)
          WHERE i.workspace_id = t.ws AND i.key = t.k",
        &workspaces,
        &names as &[&str],
        &statuses,
        &bodies as &[&[u8]]
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Forgets keys older than 24 hours.
pub async fn expire(db: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    let done =
        sqlx::query!("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'").execute(db).await?;
    Ok(done.rows_affected())
}
