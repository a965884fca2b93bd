//! SQL of the webhook settings. The secret goes in and out of this module sealed; only the worker ever opens it.

use chrono::{DateTime, Utc};
use crm_db::Channel;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// The stored settings of one workspace.
#[derive(Debug, Clone, Default)]
pub struct StoredSettings {
    pub enabled: bool,
    pub url: Option<String>,
    pub events: Vec<String>,
    pub secret_sealed: Option<Vec<u8>>,
    pub secret_last4: Option<String>,
    pub disabled_reason: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    /// Until when the replaced secret still signs (a rotation in progress); `None` when there is none.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The webhook's request rate cap, if any.
    pub max_per_second: Option<f64>,
}

impl StoredSettings {
    /// What a workspace that never saved settings has.
    pub fn defaults() -> Self {
        StoredSettings {
            events: crm_events::EventType::SUBSCRIBABLE.iter().map(|e| e.as_str().to_owned()).collect(),
            ..Default::default()
        }
    }
}

#[tracing::instrument(skip(db))]
pub async fn get(db: impl PgExecutor<'_>, workspace_id: Uuid) -> Result<StoredSettings, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT enabled, url, events, secret_sealed, secret_last4, disabled_reason, updated_at, max_per_second,
                  CASE WHEN previous_secret_sealed IS NOT NULL AND previous_secret_expires_at > now()
                       THEN previous_secret_expires_at END AS "previous_secret_expires_at?"
             FROM webhook_settings WHERE workspace_id = $1"#,
        workspace_id
    )
    .fetch_optional(db)
    .await?;
    Ok(match row {
        None => StoredSettings::defaults(),
        Some(r) => StoredSettings {
            enabled: r.enabled,
            url: r.url,
            events: r.events,
            secret_sealed: r.secret_sealed,
            secret_last4: r.secret_last4,
            disabled_reason: r.disabled_reason,
            updated_at: Some(r.updated_at),
            previous_secret_expires_at: r.previous_secret_expires_at,
            max_per_second: r.max_per_second,
        },
    })
}

/// Locks the settings row (creating it with defaults if needed) so concurrent writers serialise.
pub async fn lock(tx: &mut PgConnection, workspace_id: Uuid) -> Result<StoredSettings, sqlx::Error> {
    sqlx::query!("INSERT INTO webhook_settings (workspace_id) VALUES ($1) ON CONFLICT DO NOTHING", workspace_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!("SELECT 1 AS locked FROM webhook_settings WHERE workspace_id = $1 FOR UPDATE", workspace_id)
        .fetch_one(&mut *tx)
        .await?;
    get(&mut *tx, workspace_id).await
}

/// A new secret to store, already sealed.
pub struct NewSecret {
    pub sealed: Vec<u8>,
    pub last4: String,
}

/// What a settings write sets.
pub struct Saved<'a> {
    pub enabled: bool,
    pub url: Option<&'a str>,
    pub events: &'a [String],
    /// A new secret, or `None` to keep the current one.
    pub secret: Option<NewSecret>,
    pub max_per_second: Option<f64>,
}

/// Writes the settings. A new secret that replaces a set one keeps the old one for 24 hours, so the worker can
/// sign with both while receivers switch. Tells the workers to drop their cached copy.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn save(tx: &mut PgConnection, workspace_id: Uuid, saved: Saved<'_>) -> Result<StoredSettings, sqlx::Error> {
    let Saved { enabled, url, events, secret, max_per_second } = saved;
    let (sealed, last4) = match &secret {
        Some(s) => (Some(s.sealed.as_slice()), Some(s.last4.as_str())),
        None => (None, None),
    };
    sqlx::query!(
        "UPDATE webhook_settings SET
             enabled = $2, url = $3, events = $4,
             previous_secret_sealed = CASE WHEN $5::bytea IS NOT NULL AND secret_sealed IS NOT NULL
                                           THEN secret_sealed ELSE previous_secret_sealed END,
             previous_secret_expires_at = CASE WHEN $5::bytea IS NOT NULL AND secret_sealed IS NOT NULL
                                           THEN now() + interval '24 hours' ELSE previous_secret_expires_at END,
             secret_sealed = coalesce($5, secret_sealed),
             secret_last4 = coalesce($6, secret_last4),
             disabled_reason = CASE WHEN $2 THEN NULL ELSE disabled_reason END,
             max_per_second = $7,
             updated_at = now()
         WHERE workspace_id = $1",
        workspace_id,
        enabled,
        url,
        events,
        sealed,
        last4,
        max_per_second
    )
    .execute(&mut *tx)
    .await?;
    notify_changed(&mut *tx, workspace_id).await?;
    get(&mut *tx, workspace_id).await
}

/// Forgets the replaced secret at once, ending a rotation early (for a secret replaced because it leaked), and
/// tells the workers. Returns whether there was one to forget.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn drop_previous_secret(tx: &mut PgConnection, workspace_id: Uuid) -> Result<bool, sqlx::Error> {
    let dropped = sqlx::query!(
        "UPDATE webhook_settings SET previous_secret_sealed = NULL, previous_secret_expires_at = NULL, updated_at = now()
          WHERE workspace_id = $1 AND previous_secret_sealed IS NOT NULL",
        workspace_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if dropped {
        notify_changed(&mut *tx, workspace_id).await?;
    }
    Ok(dropped)
}

/// Turns the webhook back on if the system turned it off (it says why in `disabled_reason`, for example after 410
/// Gone), clearing the reason, and tells the workers. A webhook a person switched off stays off. Returns whether
/// it was turned back on.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn reenable(tx: &mut PgConnection, workspace_id: Uuid) -> Result<bool, sqlx::Error> {
    let reenabled = sqlx::query!(
        "UPDATE webhook_settings SET enabled = true, disabled_reason = NULL, updated_at = now()
          WHERE workspace_id = $1 AND NOT enabled AND disabled_reason IS NOT NULL
            AND url IS NOT NULL AND secret_sealed IS NOT NULL",
        workspace_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if reenabled {
        notify_changed(&mut *tx, workspace_id).await?;
    }
    Ok(reenabled)
}

/// Tells every worker (at commit) that this workspace's settings changed.
pub async fn notify_changed(tx: &mut PgConnection, workspace_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT pg_notify($1, $2) AS notified", Channel::Settings.name(), workspace_id.to_string())
        .fetch_one(tx)
        .await?;
    Ok(())
}

/// What [`reseal_all`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    pub resealed: u64,
    pub already_current: u64,
    /// Values no configured key opens (left untouched, and logged).
    pub unreadable: u64,
}

/// Re-seals every stored webhook secret (current and, during a rotation, previous) with the keyring's current
/// key, so an old `CRM_SECRET_KEY` can be dropped from `CRM_SECRET_KEY_PREVIOUS`. One workspace per transaction,
/// each row locked while it is rewritten; safe to run while the services serve, and to run again.
pub async fn reseal_all(pool: &sqlx::PgPool, keyring: &service_common::SecretKeyring) -> Result<Resealed, sqlx::Error> {
    let workspaces = sqlx::query_scalar!(
        "SELECT workspace_id FROM webhook_settings WHERE secret_sealed IS NOT NULL OR previous_secret_sealed IS NOT NULL"
    )
    .fetch_all(pool)
    .await?;
    let mut report = Resealed::default();
    for workspace_id in workspaces {
        let mut tx = pool.begin().await?;
        let row = sqlx::query!(
            "SELECT secret_sealed, previous_secret_sealed FROM webhook_settings WHERE workspace_id = $1 FOR UPDATE",
            workspace_id
        )
        .fetch_one(&mut *tx)
        .await?;
        let mut reseal = |sealed: Option<Vec<u8>>, which: &'static str| -> Option<Option<Vec<u8>>> {
            let sealed = sealed?;
            if keyring.is_current(&sealed) {
                report.already_current += 1;
                return None;
            }
            match keyring.open(&sealed, workspace_id.as_bytes()) {
                Ok(secret) => Some(Some(keyring.seal(&secret, workspace_id.as_bytes()))),
                Err(_) => {
                    report.unreadable += 1;
                    tracing::error!(%workspace_id, which, "a stored webhook secret opens with no configured key");
                    None
                }
            }
        };
        let current = reseal(row.secret_sealed, "current");
        let previous = reseal(row.previous_secret_sealed, "previous");
        let resealed = u64::from(current.is_some()) + u64::from(previous.is_some());
        if resealed > 0 {
            // Only the values re-sealed change; `None` keeps a column as it is.
            sqlx::query!(
                "UPDATE webhook_settings
                    SET secret_sealed = CASE WHEN $2 THEN $3 ELSE secret_sealed END,
                        previous_secret_sealed = CASE WHEN $4 THEN $5 ELSE previous_secret_sealed END
                  WHERE workspace_id = $1",
                workspace_id,
                current.is_some(),
                current.flatten(),
                previous.is_some(),
                previous.flatten()
            )
            .execute(&mut *tx)
            .await?;
        }
        report.resealed += resealed;
        tx.commit().await?;
    }
    Ok(report)
}
