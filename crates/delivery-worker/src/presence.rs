//! What a worker tells the others and crm-api, every few seconds: that it is alive (`worker_heartbeats`), so the
//! workers can share a webhook's rate cap between them, and how its scheduler sees each endpoint
//! (`endpoint_state`), for the console.

use crate::scheduler::EndpointSnapshot;
use chrono::Utc;
use sqlx::PgPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How often a worker says it is alive and shows its endpoints.
pub const BEAT: Duration = Duration::from_secs(2);
/// A worker not heard from for this long is taken for gone.
pub const ALIVE_FOR: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct Presence {
    pool: PgPool,
    worker_id: Uuid,
    live_workers: Arc<AtomicUsize>,
}

impl Presence {
    pub fn new(pool: PgPool) -> Self {
        Presence { pool, worker_id: Uuid::new_v4(), live_workers: Arc::new(AtomicUsize::new(1)) }
    }

    /// Workers alive at the last beat, this one included.
    pub fn live_workers(&self) -> usize {
        self.live_workers.load(Ordering::Relaxed).max(1)
    }

    /// Says this worker is alive, replaces its endpoint rows with `endpoints`, and counts the workers alive.
    pub async fn beat(&self, endpoints: &[EndpointSnapshot]) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        let at = |ago: Option<Duration>| ago.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| now - d);
        let until = |rest: Option<Duration>| rest.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| now + d);
        let ids: Vec<Uuid> = endpoints.iter().map(|e| e.endpoint).collect();
        let limits: Vec<i32> = endpoints.iter().map(|e| e.limit as i32).collect();
        let in_flight: Vec<i32> = endpoints.iter().map(|e| e.in_flight as i32).collect();
        let queued: Vec<i32> = endpoints.iter().map(|e| e.queued as i32).collect();
        let states: Vec<&str> = endpoints.iter().map(|e| e.state.as_str()).collect();
        let paused: Vec<Option<chrono::DateTime<Utc>>> = endpoints.iter().map(|e| until(e.paused_for)).collect();
        let changed: Vec<Option<chrono::DateTime<Utc>>> = endpoints.iter().map(|e| at(e.limit_changed_ago)).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            "INSERT INTO worker_heartbeats (worker_id, seen_at) VALUES ($1, now())
             ON CONFLICT (worker_id) DO UPDATE SET seen_at = now()",
            self.worker_id
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "DELETE FROM endpoint_state WHERE worker_id = $1 AND NOT (workspace_id = ANY($2))",
            self.worker_id,
            &ids
        )
        .execute(&mut *tx)
        .await?;
        // Only endpoints of workspaces that exist: a message for a workspace deleted since is no reason to fail.
        sqlx::query!(
            "INSERT INTO endpoint_state (workspace_id, worker_id, concurrency_limit, in_flight, queued, state,
                                         paused_until, limit_changed_at, updated_at)
             SELECT t.ws, $1, t.lim, t.fl, t.q, t.st, t.pu, t.lc, now()
               FROM unnest($2::uuid[], $3::int4[], $4::int4[], $5::int4[], $6::text[], $7::timestamptz[],
                           $8::timestamptz[]) AS t(ws, lim, fl, q, st, pu, lc)
               JOIN workspaces w ON w.id = t.ws
             ON CONFLICT (workspace_id, worker_id) DO UPDATE
                SET concurrency_limit = EXCLUDED.concurrency_limit, in_flight = EXCLUDED.in_flight,
                    queued = EXCLUDED.queued, state = EXCLUDED.state, paused_until = EXCLUDED.paused_until,
                    limit_changed_at = EXCLUDED.limit_changed_at, updated_at = now()",
            self.worker_id,
            &ids,
            &limits,
            &in_flight,
            &queued,
            &states as &[&str],
            &paused as &[Option<chrono::DateTime<Utc>>],
            &changed as &[Option<chrono::DateTime<Utc>>]
        )
        .execute(&mut *tx)
        .await?;
        // What crashed workers left behind, long after anyone could take it for current.
        sqlx::query!("DELETE FROM worker_heartbeats WHERE seen_at < now() - interval '1 hour'")
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM endpoint_state WHERE updated_at < now() - interval '1 hour'")
            .execute(&mut *tx)
            .await?;
        let alive = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM worker_heartbeats WHERE seen_at > now() - $1 * interval '1 second'"#,
            ALIVE_FOR.as_secs_f64()
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        self.live_workers.store(usize::try_from(alive).unwrap_or(1).max(1), Ordering::Relaxed);
        Ok(())
    }

    /// Takes this worker's heartbeat and endpoint rows away (a clean stop), so the others' share grows at once.
    pub async fn leave(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!("DELETE FROM endpoint_state WHERE worker_id = $1", self.worker_id).execute(&mut *tx).await?;
        sqlx::query!("DELETE FROM worker_heartbeats WHERE worker_id = $1", self.worker_id).execute(&mut *tx).await?;
        tx.commit().await
    }
}
