//! A webhook endpoint's health, as the console shows it: from the settings and what the workers report.

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

/// What the health is decided from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signals {
    /// The system turned the webhook off (it is disabled and says why).
    pub turned_off: bool,
    /// Some worker reports the endpoint paused.
    pub paused: bool,
    /// Some worker reports work waiting for the endpoint's own limit or rate.
    pub limited: bool,
    /// Workers reporting the endpoint now.
    pub workers: i64,
}

pub fn health(s: Signals) -> EndpointHealth {
    if s.turned_off {
        EndpointHealth::Disabled
    } else if s.paused {
        EndpointHealth::Paused
    } else if s.limited {
        EndpointHealth::Limited
    } else if s.workers > 0 {
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
        let mut s = Signals::default();
        assert_eq!(health(s), EndpointHealth::Idle);
        s.workers = 2;
        assert_eq!(health(s), EndpointHealth::Healthy);
        s.limited = true;
        assert_eq!(health(s), EndpointHealth::Limited);
        s.paused = true;
        assert_eq!(health(s), EndpointHealth::Paused);
        s.turned_off = true;
        assert_eq!(health(s), EndpointHealth::Disabled);
    }
}
