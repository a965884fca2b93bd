//! Values stored in text columns of the delivery log, written by the worker and read by crm-api.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// A text value that is not one of its type's spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a {}", self.value, self.kind)
    }
}

impl std::error::Error for UnknownValue {}

/// Where a delivery stands (`deliveries.status`; its CHECK constraint admits exactly these spellings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Created, not attempted yet (or handed back before its first attempt).
    Pending,
    /// Attempted, waiting for its next attempt.
    Retrying,
    /// The receiver answered 2xx.
    Succeeded,
    /// A terminal answer (a 4xx other than the retryable ones, a redirect, a blocked target).
    Failed,
    /// Attempts exhausted.
    Dead,
    /// Not sent: the webhook is off, not configured, or does not subscribe to the event.
    Skipped,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 6] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Retrying,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed,
        DeliveryStatus::Dead,
        DeliveryStatus::Skipped,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    /// Whether the delivery is over: nothing will send it again unless someone redelivers it.
    pub const fn has_ended(self) -> bool {
        !matches!(self, DeliveryStatus::Pending | DeliveryStatus::Retrying)
    }

    /// Every spelling, comma-separated, for error messages.
    pub fn spellings() -> String {
        DeliveryStatus::ALL.map(DeliveryStatus::as_str).join(", ")
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownValue { kind: "delivery status", value: s.to_owned() })
    }
}

/// Why an event was not sent (a `skipped` delivery's `last_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The workspace never saved webhook settings.
    NotConfigured,
    /// Settings exist but lack a URL or a secret (or the secret opens with no configured key).
    NoUrlOrSecret,
    Disabled,
    /// The webhook does not subscribe to this event type.
    NotSubscribed,
}

impl SkipReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotConfigured => "webhook not configured",
            SkipReason::NoUrlOrSecret => "webhook has no URL or secret",
            SkipReason::Disabled => "webhook disabled",
            SkipReason::NotSubscribed => "event not subscribed",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_only_two_are_open() {
        for status in DeliveryStatus::ALL {
            assert_eq!(status.as_str().parse::<DeliveryStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).as_deref(),
                Some(status.as_str())
            );
        }
        let open: Vec<_> = DeliveryStatus::ALL.into_iter().filter(|s| !s.has_ended()).collect();
        assert_eq!(open, [DeliveryStatus::Pending, DeliveryStatus::Retrying]);
        assert!("done".parse::<DeliveryStatus>().is_err());
    }

    #[test]
    fn the_check_constraint_admits_exactly_these_statuses() {
        let migration = include_str!("../../../migrations/20261122000005_deliveries.sql");
        let check = migration.split("CHECK (status IN (").nth(1).and_then(|s| s.split("))").next()).unwrap_or("");
        let listed: Vec<&str> = check.split(',').map(|s| s.trim().trim_matches('\'')).collect();
        assert_eq!(listed, DeliveryStatus::ALL.map(DeliveryStatus::as_str));
    }
}
