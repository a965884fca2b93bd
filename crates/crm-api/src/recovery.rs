//! The recovery task (every crm-api replica runs one): it advances running bulk recoveries a batch at a time.
//!
//! A batch is one transaction: lock the recovery (SKIP LOCKED: a replica busy with it is left alone), take the next
//! matched deliveries in id order, re-open them and queue their stored events (the same statements as a single
//! redeliver), and record how far the walk got and how many were queued. A crash loses at most the batch in flight,
//! which rolls back whole; the next start, on any replica, carries on from the recorded position. A delivery is
//! re-opened only if it is still in a matched status and unchanged since the recovery began, so neither two
//! replicas nor a redeliver racing the recovery can queue it twice.
//!
//! Pacing, so a recovery never starves live traffic:
//! - at most `CRM_RECOVERY_BATCH` deliveries per pass, one pass every `CRM_RECOVERY_INTERVAL_MS` (several running
//!   recoveries take turns: the one that advanced longest ago goes first);
//! - no pass while the outbox holds a batch's worth of events, so live events wait behind at most one batch on
//!   their way to the stream;
//! - no batch for a workspace that has a batch's worth of deliveries waiting for their first attempt, so its
//!   endpoint works through what is queued, its live events among it, before more is added; the recovery thus
//!   goes at the speed the endpoint absorbs it;
//! - no batch while the workspace's webhook is off (recovered deliveries would only be skipped): it waits until
//!   the webhook is enabled or resumed.

use crate::metrics::ApiMetrics;
use crate::repo::{deliveries, outbox, recoveries, settings};
use crm_events::Subjects;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How many running recoveries one pass looks at, at most.
const RECOVERIES_PER_PASS: i64 = 50;

/// How the task is paced (see the module's docs).
#[derive(Debug, Clone, Copy)]
pub struct RecoveryPacing {
    /// `CRM_RECOVERY_BATCH`: deliveries re-queued per pass, at most.
    pub batch: i64,
    /// `CRM_RECOVERY_INTERVAL_MS`: the time between passes.
    pub interval: Duration,
}

pub struct Recoverer {
    pool: PgPool,
    subjects: Subjects,
    pacing: RecoveryPacing,
    metrics: ApiMetrics,
}

impl Recoverer {
    pub fn new(pool: PgPool, subjects: Subjects, pacing: RecoveryPacing, metrics: ApiMetrics) -> Self {
        Recoverer { pool, subjects, pacing, metrics }
    }

    /// Runs a pass every interval, and at once when `wake` is notified (a recovery was started here), until
    /// `shutdown`. A pass in progress finishes its batch's transaction first.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.pacing.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                _ = wake.notified() => {}
            }
            match self.pass().await {
                Ok(0) => {}
                Ok(queued) => tracing::debug!(queued, "recovery pass"),
                Err(e) => tracing::warn!(error = %e, "recovery pass failed; will retry"),
            }
        }
    }

    /// One pass: batches of the running recoveries that may go now, at most `batch` deliveries in all. Returns
    /// how many deliveries it re-queued.
    pub async fn pass(&self) -> Result<u64, sqlx::Error> {
        let batch = self.pacing.batch;
        if outbox::backlog_at_least(&self.pool, batch, crate::relay::BACKLOG_AFTER).await? {
            return Ok(0);
        }
        let mut room = batch;
        let mut queued = 0;
        for id in recoveries::due(&self.pool, RECOVERIES_PER_PASS).await? {
            if room == 0 {
                break;
            }
            let n = self.step(id, room).await?;
            room -= i64::try_from(n).unwrap_or(room).min(room);
            queued += n;
        }
        Ok(queued)
    }

    /// One batch of one recovery, at most `limit` deliveries, in one transaction.
    async fn step(&self, id: Uuid, limit: i64) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let Some(recovery) = recoveries::lock(&mut tx, id).await? else { return Ok(0) };
        let ws = recovery.workspace_id;
        if !settings::get(&mut *tx, ws).await?.enabled
            || deliveries::pending_at_least(&mut *tx, ws, self.pacing.batch).await?
        {
            return Ok(0);
        }
        let batch = recoveries::next_batch(&mut tx, &recovery, limit).await?;
        let Some(&last) = batch.last() else {
            recoveries::complete(&mut tx, id).await?;
            tx.commit().await?;
            tracing::info!(recovery_id = %id, workspace_id = %ws, queued = recovery.queued, "recovery completed");
            return Ok(0);
        };
        let statuses: Vec<&str> = recovery.statuses.iter().map(String::as_str).collect();
        let queued = crate::service::deliveries::requeue(
            &mut tx,
            &self.subjects,
            ws,
            &batch,
            &statuses,
            Some(recovery.created_at),
        )
        .await?;
        let n = queued.len() as u64;
        recoveries::advance(&mut tx, id, last, i64::try_from(n).unwrap_or(i64::MAX)).await?;
        tx.commit().await?;
        self.metrics.deliveries_recovered.inc_by(n);
        Ok(n)
    }
}
