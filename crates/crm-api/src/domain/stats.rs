//! The delivery statistics' shape, without I/O: the windows the console offers, how a window is cut into
//! buckets, and the buckets filled from what the database aggregated (every bucket present, empty ones as zeros).

use chrono::{DateTime, Duration, DurationRound, Utc};
use crm_db::DeliveryStatus;
use serde::Serialize;
use utoipa::ToSchema;

/// A window the statistics cover, ending with the bucket that holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum StatsWindow {
    /// The last hour, in 60 buckets of a minute.
    #[serde(rename = "1h")]
    Hour,
    /// The last day, in 96 buckets of 15 minutes.
    #[serde(rename = "24h")]
    Day,
}

impl StatsWindow {
    pub fn parse(raw: &str) -> Option<StatsWindow> {
        match raw {
            "1h" => Some(StatsWindow::Hour),
            "24h" => Some(StatsWindow::Day),
            _ => None,
        }
    }

    pub fn bucket(self) -> Duration {
        match self {
            StatsWindow::Hour => Duration::minutes(1),
            StatsWindow::Day => Duration::minutes(15),
        }
    }

    pub fn buckets(self) -> usize {
        match self {
            StatsWindow::Hour => 60,
            StatsWindow::Day => 96,
        }
    }

    /// Where the window starts and ends, given the time now: the last bucket is the one that holds `now` (it is
    /// still filling), and buckets start on whole minutes (quarter hours for the day).
    pub fn bounds(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let bucket = self.bucket();
        let start_of_current = now.duration_trunc(bucket).unwrap_or(now);
        let to = start_of_current + bucket;
        (to - bucket * i32::try_from(self.buckets()).unwrap_or(i32::MAX), to)
    }
}

/// Deliveries by their current status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatusCounts {
    pub pending: i64,
    pub retrying: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub dead: i64,
    pub skipped: i64,
}

impl StatusCounts {
    fn add(&mut self, status: DeliveryStatus, n: i64) {
        let slot = match status {
            DeliveryStatus::Pending => &mut self.pending,
            DeliveryStatus::Retrying => &mut self.retrying,
            DeliveryStatus::Succeeded => &mut self.succeeded,
            DeliveryStatus::Failed => &mut self.failed,
            DeliveryStatus::Dead => &mut self.dead,
            DeliveryStatus::Skipped => &mut self.skipped,
        };
        *slot += n;
    }
}

/// One bucket of the window.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StatsBucket {
    /// Where the bucket starts; it lasts `bucket_seconds`.
    #[serde(serialize_with = "crate::json::timestamp")]
    pub start: DateTime<Utc>,
    /// The deliveries created in the bucket, by their status now.
    pub deliveries: StatusCounts,
    /// The median duration of the attempts started in the bucket, in milliseconds; null without attempts.
    #[schema(required = true)]
    pub attempt_ms_p50: Option<f64>,
    /// Their 99th percentile.
    #[schema(required = true)]
    pub attempt_ms_p99: Option<f64>,
}

/// The buckets of a window from `from`, filled from per-bucket counts `(bucket, status, n)` and attempt
/// percentiles `(bucket, p50, p99)`; rows outside the window (a clock step) are ignored. Returns the buckets and
/// the window's totals.
pub fn fill(
    window: StatsWindow,
    from: DateTime<Utc>,
    counts: impl IntoIterator<Item = (i32, String, i64)>,
    latencies: impl IntoIterator<Item = (i32, f64, f64)>,
) -> (Vec<StatsBucket>, StatusCounts) {
    let mut buckets: Vec<StatsBucket> = (0..window.buckets())
        .map(|i| StatsBucket {
            start: from + window.bucket() * i32::try_from(i).unwrap_or(0),
            deliveries: StatusCounts::default(),
            attempt_ms_p50: None,
            attempt_ms_p99: None,
        })
        .collect();
    let mut totals = StatusCounts::default();
    for (bucket, status, n) in counts {
        let (Some(b), Ok(status)) = (usize::try_from(bucket).ok().and_then(|i| buckets.get_mut(i)), status.parse())
        else {
            continue;
        };
        b.deliveries.add(status, n);
        totals.add(status, n);
    }
    for (bucket, p50, p99) in latencies {
        if let Some(b) = usize::try_from(bucket).ok().and_then(|i| buckets.get_mut(i)) {
            b.attempt_ms_p50 = Some(p50);
            b.attempt_ms_p99 = Some(p99);
        }
    }
    (buckets, totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_end_with_the_bucket_holding_now() {
        let (from, to) = StatsWindow::Hour.bounds(at("2026-12-10T12:34:20.5Z"));
        assert_eq!((from, to), (at("2026-12-10T11:35:00Z"), at("2026-12-10T12:35:00Z")));
        let (from, to) = StatsWindow::Day.bounds(at("2026-12-10T12:34:20Z"));
        assert_eq!((from, to), (at("2026-12-09T12:45:00Z"), at("2026-12-10T12:45:00Z")));
        assert_eq!(StatsWindow::parse("24h"), Some(StatsWindow::Day));
        assert_eq!(StatsWindow::parse("7d"), None);
    }

    #[test]
    fn every_bucket_is_present_and_totals_add_up() {
        let from = at("2026-12-10T11:35:00Z");
        let counts = vec![
            (0, "succeeded".to_owned(), 3),
            (59, "dead".to_owned(), 1),
            (59, "succeeded".to_owned(), 2),
            (60, "failed".to_owned(), 9),
            (-1, "failed".to_owned(), 9),
        ];
        let (buckets, totals) = fill(StatsWindow::Hour, from, counts, vec![(59, 12.0, 80.5)]);
        assert_eq!(buckets.len(), 60);
        assert_eq!(buckets[1].start, at("2026-12-10T11:36:00Z"));
        assert_eq!(buckets[0].deliveries.succeeded, 3);
        assert_eq!((buckets[59].deliveries.dead, buckets[59].deliveries.succeeded), (1, 2));
        assert_eq!((buckets[59].attempt_ms_p50, buckets[59].attempt_ms_p99), (Some(12.0), Some(80.5)));
        assert_eq!(buckets[0].attempt_ms_p50, None);
        assert_eq!(totals, StatusCounts { succeeded: 5, dead: 1, ..Default::default() });
    }
}
