//! How many requests an endpoint may have in flight, learned from how it answers: additive increase,
//! multiplicative decrease (AIMD), as TCP congestion control does with its window.
//!
//! The limit starts low and doubles per round trip (slow start) while the endpoint answers quickly and the limit
//! is actually used; after the first sign of congestion it grows by one per round trip. A timeout, a connection
//! error, a 5xx or a 429 halves it; an answer much slower than the fastest seen recently (queueing at the
//! receiver) takes a tenth off. At most one decrease per round trip, so a burst of failures from requests that
//! were all in flight together counts once. The limit stays between 1 and the worker's concurrency: a hanging
//! endpoint falls to one slot within a few timeouts, a fast one grows until it uses the whole worker.

use std::time::{Duration, Instant};

/// An answer this much slower than the recent fastest one counts as congestion.
const LATENCY_TOLERANCE: f64 = 2.0;
/// ...but only when it is also this much slower: a receiver that answers in 1 ms and sometimes in 3 ms is fine.
const LATENCY_SLACK: Duration = Duration::from_millis(10);
/// The recent fastest answer forgets older ones over about this long, so a receiver that got slower for good
/// sets a new baseline instead of being throttled for ever.
const BASELINE_MEMORY: Duration = Duration::from_secs(30);

/// What an attempt told the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The endpoint answered (any status that does not mean "too busy"), taking this long.
    Answered(Duration),
    /// The endpoint is overloaded or unreachable (timeout, connection error, 5xx, 429), found out after this long.
    Overloaded(Duration),
}

#[derive(Debug, Clone)]
pub struct Limiter {
    limit: f64,
    ceiling: f64,
    slow_start: bool,
    /// The fastest recent answer and when it was seen.
    baseline: Option<(Duration, Instant)>,
    /// Smoothed answer time, for the round-trip window and the endpoint's drain rate.
    latency: Option<Duration>,
    last_decrease: Option<Instant>,
    /// When the limit last changed by a whole step, for the console.
    pub changed_at: Option<Instant>,
}

impl Limiter {
    pub fn new(initial: usize, ceiling: usize) -> Self {
        let ceiling = ceiling.max(1) as f64;
        Limiter {
            limit: (initial.max(1) as f64).min(ceiling),
            ceiling,
            slow_start: true,
            baseline: None,
            latency: None,
            last_decrease: None,
            changed_at: None,
        }
    }

    /// Requests the endpoint may have in flight now.
    pub fn limit(&self) -> usize {
        self.limit.floor().max(1.0) as usize
    }

    /// Smoothed answer time, if any answer was seen.
    pub fn latency(&self) -> Option<Duration> {
        self.latency
    }

    /// Learns from one attempt. `in_flight` is how many requests were in flight when it ended (itself included):
    /// the limit grows only while it is used, so a quiet endpoint keeps the limit it has.
    pub fn on(&mut self, signal: Signal, in_flight: usize, now: Instant) {
        let before = self.limit();
        let took = match signal {
            Signal::Answered(took) | Signal::Overloaded(took) => took,
        };
        // Slow failures count too: a hanging endpoint's time is what its queue is drained at.
        self.latency = Some(match self.latency {
            None => took,
            Some(avg) => avg.mul_f64(0.8) + took.mul_f64(0.2),
        });
        match signal {
            Signal::Overloaded(_) => self.decrease(0.5, now),
            Signal::Answered(took) => {
                let baseline = match self.baseline {
                    Some((fastest, at)) if took >= fastest && now.duration_since(at) < BASELINE_MEMORY => fastest,
                    _ => {
                        self.baseline = Some((took, now));
                        took
                    }
                };
                if took > baseline.mul_f64(LATENCY_TOLERANCE) && took > baseline + LATENCY_SLACK {
                    self.decrease(0.9, now);
                } else if in_flight + 1 >= self.limit() {
                    self.limit = if self.slow_start { self.limit + 1.0 } else { self.limit + 1.0 / self.limit };
                    self.limit = self.limit.min(self.ceiling);
                }
            }
        }
        if self.limit() != before {
            self.changed_at = Some(now);
        }
    }

    fn decrease(&mut self, factor: f64, now: Instant) {
        let window = self.latency.unwrap_or(Duration::from_millis(100)).max(Duration::from_millis(10));
        if self.last_decrease.is_some_and(|at| now.duration_since(at) < window) {
            return;
        }
        self.slow_start = false;
        self.limit = (self.limit * factor).max(1.0);
        self.last_decrease = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Runs `rounds` round trips of a saturated endpoint answering with `signal`, `gap` apart.
    fn drive(l: &mut Limiter, now: &mut Instant, rounds: usize, signal: Signal, gap: Duration) {
        for _ in 0..rounds {
            for _ in 0..l.limit() {
                let in_flight = l.limit();
                l.on(signal, in_flight, *now);
            }
            *now += gap;
        }
    }

    #[test]
    fn a_fast_endpoint_grows_to_the_ceiling() {
        let mut l = Limiter::new(4, 64);
        let mut now = Instant::now();
        drive(&mut l, &mut now, 10, Signal::Answered(2 * MS), 2 * MS);
        assert_eq!(l.limit(), 64);
    }

    #[test]
    fn a_slow_but_steady_endpoint_also_grows() {
        // A receiver that always takes 50 ms is not congested: it is just far away.
        let mut l = Limiter::new(4, 64);
        let mut now = Instant::now();
        drive(&mut l, &mut now, 10, Signal::Answered(50 * MS), 50 * MS);
        assert_eq!(l.limit(), 64);
    }

    #[test]
    fn a_hanging_endpoint_falls_to_one_within_a_few_timeouts() {
        let mut l = Limiter::new(64, 64);
        let mut now = Instant::now();
        l.on(Signal::Answered(5 * MS), 1, now);
        for _ in 0..6 {
            now += Duration::from_secs(10);
            l.on(Signal::Overloaded(Duration::from_secs(10)), 1, now);
        }
        assert_eq!(l.limit(), 1);
    }

    #[test]
    fn failures_of_one_round_trip_count_once() {
        let mut l = Limiter::new(32, 64);
        let now = Instant::now();
        l.on(Signal::Answered(10 * MS), 1, now);
        for _ in 0..20 {
            l.on(Signal::Overloaded(10 * MS), 32, now);
        }
        assert_eq!(l.limit(), 16);
    }

    #[test]
    fn answers_far_slower_than_the_baseline_shrink_it_and_a_quiet_endpoint_keeps_its_limit() {
        let mut l = Limiter::new(20, 64);
        let mut now = Instant::now();
        l.on(Signal::Answered(5 * MS), 1, now);
        assert_eq!(l.limit(), 20, "not grown: only one of 20 was in use");
        now += 10 * MS;
        l.on(Signal::Answered(200 * MS), 20, now);
        assert_eq!(l.limit(), 18);
        assert_eq!(l.changed_at, Some(now));
    }
}
