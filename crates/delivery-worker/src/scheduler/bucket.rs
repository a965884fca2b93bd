//! A token bucket: the optional per-webhook request rate (`max_per_second`), which the scheduler paces to.

use std::time::{Duration, Instant};

/// Refilling adds fractions of a token; a token this close to whole counts as whole.
const EPSILON: f64 = 1e-9;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// `rate` requests per second, in bursts of at most one second's worth (and at least one request) saved up
    /// while idle. It starts with `tokens` (at most one): a cold start sends one request, not a whole burst.
    pub fn new(rate: f64, tokens: f64, now: Instant) -> Self {
        let capacity = rate.max(1.0);
        TokenBucket { rate, capacity, tokens: tokens.clamp(0.0, 1.0), at: now }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The tokens there are at `now`.
    fn tokens_at(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * self.rate).min(self.capacity)
    }

    fn refill(&mut self, now: Instant) {
        self.tokens = self.tokens_at(now);
        self.at = now;
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 - EPSILON {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is there (zero when one is).
    pub fn wait(&self, now: Instant) -> Duration {
        let tokens = self.tokens_at(now);
        if tokens >= 1.0 - EPSILON {
            Duration::ZERO
        } else {
            // Never a zero wait for a token that is not there: a caller would wake and find none, again and again.
            Duration::from_secs_f64((1.0 - tokens) / self.rate).max(Duration::from_micros(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_to_the_rate_after_a_burst() {
        let start = Instant::now();
        let mut b = TokenBucket::new(5.0, 1.0, start);
        assert!(b.try_take(start), "a cold start sends one");
        assert!(!b.try_take(start));
        assert_eq!(b.wait(start), Duration::from_millis(200));
        // Over the next two seconds, ten more.
        let sent = (1..=200).filter(|i| b.try_take(start + Duration::from_millis(10 * i))).count();
        assert_eq!(sent, 10);
        // Idle for long, it saves up one second's worth, no more.
        let later = start + Duration::from_secs(60);
        let burst = (0..10).filter(|_| b.try_take(later)).count();
        assert_eq!(burst, 5);
    }

    #[test]
    fn a_slow_rate_allows_one_at_a_time() {
        let start = Instant::now();
        let mut b = TokenBucket::new(0.5, 1.0, start);
        assert!(b.try_take(start));
        assert!(!b.try_take(start + Duration::from_secs(1)));
        assert!(b.try_take(start + Duration::from_secs(2)));
    }
}
