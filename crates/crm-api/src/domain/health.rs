//! A webhook endpoint's health, as the console shows it: from the settings and what the workers report.

use crate::repo::endpoint::EndpointReport;
use crate::repo::settings::StoredSettings;

/// Where the endpoint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointHealth {
    /// No worker is sending to it right now (nothing to send, or the webhook is off).
    Idle,
    /// Sending as fast as it answers.
    Healthy,
    /// Work waits for it: it is at its concurrency limit or its rate cap.
    Limited,
    /// The breaker paused it after repeated failures, or it asked to wait (`Retry-After`), until `paused_until`.
    Paused,
    /// The system turned the webhook off (for example the endpoint answered 410 Gone); `disabled_reason` says why.
    Disabled,
}

pub fn health(settings: &StoredSettings, report: &EndpointReport) -> EndpointHealth {
    if !settings.enabled && settings.disabled_reason.is_some() {
        EndpointHealth::Disabled
    } else if report.paused {
        EndpointHealth::Paused
    } else if report.limited {
        EndpointHealth::Limited
    } else if report.workers > 0 {
        EndpointHealth::Healthy
    } else {
        EndpointHealth::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_wins_then_paused_then_limited() {
        let mut settings = StoredSettings { enabled: true, ..Default::default() };
        let mut report = EndpointReport::default();
        assert_eq!(health(&settings, &report), EndpointHealth::Idle);
        report.workers = 2;
        assert_eq!(health(&settings, &report), EndpointHealth::Healthy);
        report.limited = true;
        assert_eq!(health(&settings, &report), EndpointHealth::Limited);
        report.paused = true;
        assert_eq!(health(&settings, &report), EndpointHealth::Paused);
        settings.enabled = false;
        settings.disabled_reason = Some("endpoint answered 410 Gone".into());
        assert_eq!(health(&settings, &report), EndpointHealth::Disabled);
    }
}
