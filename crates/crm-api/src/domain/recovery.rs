//! A bulk recovery request: which ended deliveries of a workspace to send again. What makes two requests "the
//! same" is decided here: the same `since` (to the microsecond) and the same set of statuses, in any order.

use crate::error::{ApiError, FieldError};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use crm_db::DeliveryStatus;
use serde::Deserialize;
use utoipa::ToSchema;

/// How far back a recovery may reach: the default delivery-log retention, so what it matches is still there.
pub const MAX_AGE_DAYS: i64 = 30;

/// The statuses a recovery matches when the request names none.
pub const DEFAULT_STATUSES: [DeliveryStatus; 2] = [DeliveryStatus::Failed, DeliveryStatus::Dead];

/// `POST …/crm-webhook/recoveries`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RecoveryRequest)]
pub struct RecoveryBody {
    /// RFC 3339 timestamp: deliveries created at or after it (to the millisecond) are matched. At most 30 days
    /// back, not in the future.
    #[schema(format = "date-time", example = "2026-12-01T00:00:00Z")]
    since: String,
    /// The delivery statuses to send again, any of `failed`, `dead`, `skipped` and `succeeded`; absent: `failed`
    /// and `dead`. Deliveries still `pending` or `retrying` are in progress and never re-queued.
    #[schema(value_type = Option<Vec<String>>, example = json!(["failed", "dead"]))]
    statuses: Option<Vec<String>>,
}

/// A checked recovery request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryRequest {
    pub since: DateTime<Utc>,
    /// Sorted by spelling, without duplicates: the form in which requests are compared and stored.
    pub statuses: Vec<DeliveryStatus>,
}

impl RecoveryRequest {
    /// The statuses' spellings, as stored.
    pub fn status_names(&self) -> Vec<String> {
        self.statuses.iter().map(|s| s.as_str().to_owned()).collect()
    }

    /// Whether a stored recovery was asked for with exactly this request.
    pub fn is_same_as(&self, since: DateTime<Utc>, statuses: &[String]) -> bool {
        self.since == since && self.status_names() == statuses
    }
}

impl RecoveryBody {
    /// Checks the body against `now`, reporting every bad field at once.
    pub fn validate(self, now: DateTime<Utc>) -> Result<RecoveryRequest, ApiError> {
        let mut errors = Vec::new();
        let since = match DateTime::parse_from_rfc3339(self.since.trim()) {
            Err(_) => {
                errors.push(FieldError::new("since", "must be an RFC 3339 timestamp, e.g. 2026-12-01T09:30:00Z"));
                None
            }
            Ok(at) => {
                // Stored to the microsecond, as PostgreSQL keeps it, so a repeated request compares equal.
                let at = at.with_timezone(&Utc).trunc_subsecs(6);
                if at > now {
                    errors.push(FieldError::new("since", "must not be in the future"));
                } else if now - at > Duration::days(MAX_AGE_DAYS) {
                    errors.push(FieldError::new("since", format!("must be at most {MAX_AGE_DAYS} days ago")));
                }
                Some(at)
            }
        };
        let mut statuses = Vec::new();
        match self.statuses {
            None => statuses.extend(DEFAULT_STATUSES),
            Some(names) if names.is_empty() => {
                errors.push(FieldError::new("statuses", "must name at least one status (or be left out)"))
            }
            Some(names) => {
                for (i, name) in names.iter().enumerate() {
                    match name.parse::<DeliveryStatus>() {
                        Ok(status) if status.has_ended() => statuses.push(status),
                        Ok(_) => errors.push(FieldError::new(
                            format!("statuses[{i}]"),
                            "is still in progress; only ended deliveries (failed, dead, skipped, succeeded) can be \
                             recovered",
                        )),
                        Err(_) => errors.push(FieldError::new(
                            format!("statuses[{i}]"),
                            "must be one of failed, dead, skipped, succeeded",
                        )),
                    }
                }
            }
        }
        statuses.sort_by_key(|s| s.as_str());
        statuses.dedup();
        match since {
            Some(since) if errors.is_empty() => Ok(RecoveryRequest { since, statuses }),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(body: serde_json::Value) -> Result<RecoveryRequest, Vec<String>> {
        let now = DateTime::parse_from_rfc3339("2026-12-10T12:00:00Z").unwrap().with_timezone(&Utc);
        let body: RecoveryBody = serde_json::from_value(body).map_err(|e| vec![e.to_string()])?;
        body.validate(now).map_err(|e| match e {
            ApiError::Validation(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => vec![other.to_string()],
        })
    }

    #[test]
    fn statuses_default_to_failed_and_dead_and_compare_as_a_set() {
        let a = check(json!({"since": "2026-12-09T12:00:00Z"})).unwrap();
        assert_eq!(a.statuses, [DeliveryStatus::Dead, DeliveryStatus::Failed]);
        let b = check(json!({"since": "2026-12-09T13:00:00.0000001+01:00", "statuses": ["failed", "dead", "failed"]}))
            .unwrap();
        assert_eq!(a, b, "the same instant (to the microsecond) and the same set of statuses are the same request");
        assert!(a.is_same_as(b.since, &b.status_names()));
        let c = check(json!({"since": "2026-12-09T12:00:00Z", "statuses": ["dead"]})).unwrap();
        assert!(!a.is_same_as(c.since, &c.status_names()));
    }

    #[test]
    fn every_bad_field_is_named() {
        assert_eq!(check(json!({"since": "yesterday"})).unwrap_err(), ["since"]);
        assert_eq!(check(json!({"since": "2026-11-01T00:00:00Z"})).unwrap_err(), ["since"], "more than 30 days");
        assert_eq!(check(json!({"since": "2026-12-11T00:00:00Z"})).unwrap_err(), ["since"], "in the future");
        assert_eq!(
            check(json!({"since": "x", "statuses": ["dead", "retrying", "lost"]})).unwrap_err(),
            ["since", "statuses[1]", "statuses[2]"]
        );
        assert_eq!(check(json!({"since": "2026-12-10T00:00:00Z", "statuses": []})).unwrap_err(), ["statuses"]);
        assert!(check(json!({"since": "2026-11-10T12:00:00Z", "statuses": ["skipped", "succeeded"]})).is_ok());
    }
}
