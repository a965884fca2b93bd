//! Operators' "resume now": crm-api announces a resumed endpoint on `NOTIFY crm_endpoint_resume` (payload: the
//! workspace id), and this listener hands it to the consumer loop, which owns the scheduler and lifts its pause
//! ([`crate::scheduler::Scheduler::resume`]). A resume missed while the listener reconnects costs nothing but
//! waiting out the pause, so a gap needs no action.

use service_common::db::{follow_channel, Heard};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Resumes waiting for the consumer loop; more than this at once are dropped (each is only a hint).
pub const QUEUE: usize = 64;

/// Forwards every resumed endpoint to `to` until `stop`.
pub async fn follow(pool: PgPool, to: mpsc::Sender<Uuid>, stop: CancellationToken) {
    follow_channel(&pool, crm_db::Channel::EndpointResume.name(), &stop, |heard| {
        if let Heard::Notification(payload) = heard {
            match payload.parse::<Uuid>() {
                Ok(endpoint) => {
                    let _ = to.try_send(endpoint);
                }
                Err(_) => tracing::debug!("a resume notification without a workspace id"),
            }
        }
    })
    .await
}
