//! SQL of what the workers report about a workspace's endpoint (`endpoint_state`, written by each worker every
//! few seconds), summed over the workers that reported recently; and the word crm-api sends the workers back when
//! an operator resumes the endpoint.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A report older than this is not current: its worker stopped or cannot reach the database.
pub const FRESH_FOR_SECS: f64 = 15.0;

/// The endpoint across the workers that see it now.
#[derive(Debug, Clone, Default)]
pub struct EndpointReport {
    /// Workers with a current report.
    pub workers: i64,
    /// The sum of the workers' adaptive concurrency limits.
    pub concurrency_limit: Option<i64>,
    pub in_flight: i64,
    pub queued: i64,
    pub paused: bool,
    pub limited: bool,
    pub paused_until: Option<DateTime<Utc>>,
    pub limit_changed_at: Option<DateTime<Utc>>,
}

pub async fn report(db: impl PgExecutor<'_>, workspace_id: Uuid) -> Result<EndpointReport, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT count(*) AS "workers!",
                  sum(concurrency_limit)::bigint AS "concurrency_limit",
                  coalesce(sum(in_flight), 0)::bigint AS "in_flight!",
                  coalesce(sum(queued), 0)::bigint AS "queued!",
                  coalesce(bool_or(state = 'paused'), false) AS "paused!",
                  coalesce(bool_or(state = 'limited'), false) AS "limited!",
                  max(paused_until) AS "paused_until",
                  max(limit_changed_at) AS "limit_changed_at"
             FROM endpoint_state
            WHERE workspace_id = $1 AND updated_at > now() - $2 * interval '1 second'"#,
        workspace_id,
        FRESH_FOR_SECS
    )
    .fetch_one(db)
    .await?;
    Ok(EndpointReport {
        workers: r.workers,
        concurrency_limit: r.concurrency_limit,
        in_flight: r.in_flight,
        queued: r.queued,
        paused: r.paused,
        limited: r.limited,
        paused_until: r.paused_until,
        limit_changed_at: r.limit_changed_at,
    })
}

/// Tells every worker (at commit) to lift its pause of the workspace's endpoint: the breaker's and any
/// `Retry-After` hold.
pub async fn notify_resume(tx: &mut sqlx::PgConnection, workspace_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_notify($1, $2) AS notified",
        crm_db::Channel::EndpointResume.name(),
        workspace_id.to_string()
    )
    .fetch_one(tx)
    .await?;
    Ok(())
}
