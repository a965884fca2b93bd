//! The endpoint breaker: after repeated consecutive retryable failures an endpoint is paused instead of being
//! hammered; when the pause ends one probe goes through, and its outcome closes the breaker or pauses it again
//! for twice as long (up to [`MAX_PAUSE`]).
//!
//! It is per process by design: no coordination on the hot path. With N replicas a failing endpoint sees at most
//! N probes per pause, which is the price of not sharing state.

use std::time::{Duration, Instant};

/// The longest pause.
pub const MAX_PAUSE: Duration = Duration::from_secs(600);

/// What the breaker allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send normally.
    Go,
    /// Send one request: the probe of a paused endpoint.
    Probe,
    /// Send nothing for this long.
    Paused(Duration),
}

#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    first_pause: Duration,
    consecutive_failures: u32,
    paused_until: Option<Instant>,
    pause: Duration,
    probing: bool,
}

impl Breaker {
    pub fn new(threshold: u32, first_pause: Duration) -> Self {
        Breaker {
            threshold,
            first_pause,
            consecutive_failures: 0,
            paused_until: None,
            pause: Duration::ZERO,
            probing: false,
        }
    }

    pub fn admits(&self, now: Instant) -> Admission {
        match self.paused_until {
            None => Admission::Go,
            Some(until) if now < until => Admission::Paused(until - now),
            // A probe is out; the rest wait a little for its verdict.
            Some(_) if self.probing => Admission::Paused(Duration::from_secs(1)),
            Some(_) => Admission::Probe,
        }
    }

    /// The probe [`Breaker::admits`] allowed was sent.
    pub fn probe_started(&mut self) {
        self.probing = true;
    }

    /// A probe that did not complete (handed back at shutdown) lets the next request probe.
    pub fn probe_abandoned(&mut self) {
        self.probing = false;
    }

    /// The endpoint answered in a way that needs no retry (success or a terminal answer): closed again.
    pub fn succeeded(&mut self) {
        *self = Breaker::new(self.threshold, self.first_pause);
    }

    /// An operator resumed the endpoint: closed again, the failures counted so far forgotten. A probe still out
    /// finishes as an ordinary request.
    pub fn resume(&mut self) {
        self.succeeded();
    }

    /// A retryable failure; true when it paused the endpoint.
    pub fn failed(&mut self, now: Instant) -> bool {
        self.consecutive_failures += 1;
        let was_probe = std::mem::replace(&mut self.probing, false);
        if was_probe || (self.paused_until.is_none() && self.consecutive_failures >= self.threshold) {
            self.pause = if self.pause.is_zero() { self.first_pause } else { (self.pause * 2).min(MAX_PAUSE) };
            self.paused_until = Some(now + self.pause);
            return true;
        }
        false
    }

    /// Until when the endpoint is paused, while it is (or its probe is out).
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Whether the breaker holds nothing worth remembering.
    pub fn is_closed(&self) -> bool {
        self.paused_until.is_none() && self.consecutive_failures == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_after_threshold_probes_and_doubles() {
        let mut b = Breaker::new(3, Duration::from_millis(30));
        let now = Instant::now();
        assert!(!b.failed(now));
        assert!(!b.failed(now));
        assert_eq!(b.admits(now), Admission::Go);
        assert!(b.failed(now), "third consecutive failure pauses");
        assert!(matches!(b.admits(now), Admission::Paused(d) if d <= Duration::from_millis(30)));
        let later = now + Duration::from_millis(35);
        assert_eq!(b.admits(later), Admission::Probe);
        b.probe_started();
        assert!(matches!(b.admits(later), Admission::Paused(_)), "one probe at a time");
        assert!(b.failed(later), "a failed probe pauses again");
        assert!(matches!(b.admits(later), Admission::Paused(d) if d > Duration::from_millis(30)), "twice as long");
        b.succeeded();
        assert_eq!(b.admits(later), Admission::Go);
        assert!(b.is_closed());
    }

    #[test]
    fn a_success_resets_the_count_and_an_abandoned_probe_frees_the_next() {
        let mut b = Breaker::new(2, Duration::from_secs(1));
        let now = Instant::now();
        b.failed(now);
        b.succeeded();
        assert!(!b.failed(now));
        assert!(b.failed(now));
        let later = now + Duration::from_secs(2);
        assert_eq!(b.admits(later), Admission::Probe);
        b.probe_started();
        b.probe_abandoned();
        assert_eq!(b.admits(later), Admission::Probe);
    }
}
