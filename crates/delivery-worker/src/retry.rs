//! What one attempt's outcome means, and when to try again.
//!
//! Retries are JetStream's job (docs/decisions.md): the worker does not sleep or keep a
//! timer; it NAKs the message with a delay and JetStream redelivers it then, to whichever replica is free. This
//! module owns the two pieces of policy behind that: the decision matrix of docs/contract.md §4 (which outcomes are
//! success, retryable, terminal, or retryable-but-exhausted) and the exponential backoff schedule that produces
//! the NAK delays. [`Decision`] maps one-to-one onto ack / NAK-with-delay / term.
//!
//! The matrix: 2xx succeeds. Network errors, timeouts, 408, 425, 429 and 5xx are retried, honouring
//! `Retry-After` up to the cap. Every other answer is terminal: a redirect (never followed, see
//! [`sender`](crate::sender)), any other non-2xx, and a target blocked by the egress policy; 410 Gone additionally
//! disables the webhook. A retryable outcome on the last allowed attempt makes the delivery `dead`.
//!
//! `attempt` numbers come from our own delivery log, not from JetStream's redelivery counter, so NAKs that were
//! not attempts (fairness hold-backs, shutdown) do not spend the budget.

use std::time::Duration;

use crate::sender::SendOutcome;

/// Default `CRM_WEBHOOK_RETRY_BASE_MS`: the first retry comes 5 s after the first attempt.
pub const DEFAULT_BASE: Duration = Duration::from_secs(5);
/// Default `CRM_WEBHOOK_RETRY_MAX_MS`: delays double up to one hour.
pub const DEFAULT_CAP: Duration = Duration::from_secs(60 * 60);
/// How long the default schedule keeps retrying (the default schedule must cover at least 24 h: docs/contract.md §4, "Retries").
pub const DEFAULT_SPAN: Duration = Duration::from_secs(24 * 60 * 60);

/// The exponential backoff schedule and the attempt budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first attempt; doubles with every retry.
    pub base: Duration,
    /// No delay is longer than this, `Retry-After` included.
    pub cap: Duration,
    /// Attempts in total (the first one included) before a retryable outcome makes the delivery `dead`. `0` is
    /// treated like `1`.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 5 s base, 1 h cap, and as many attempts as cover 24 h ([`RetryPolicy::attempts_to_cover`] gives 34).
    fn default() -> Self {
        Self::covering(DEFAULT_BASE, DEFAULT_CAP, DEFAULT_SPAN)
    }
}

impl RetryPolicy {
    /// A policy with `max_attempts` = [`attempts_to_cover`](Self::attempts_to_cover)`(base, cap, span)`.
    pub fn covering(base: Duration, cap: Duration, span: Duration) -> Self {
        Self { base, cap, max_attempts: Self::attempts_to_cover(base, cap, span) }
    }

    /// The smallest attempt count whose schedule (without jitter) spans at least `span` with this base and cap:
    /// the smallest `n` with `backoff(1, 0) + … + backoff(n - 1, 0) >= span`, i.e. the time from the first to the
    /// last attempt. `span` zero gives 1. A schedule that can never cover `span` (zero base or cap) gives
    /// `u32::MAX`.
    ///
    /// With 5 s and 1 h: 5 s, 10 s, … 2560 s (10 delays, 5115 s), then 23 delays of 1 h: 34 attempts.
    pub fn attempts_to_cover(base: Duration, cap: Duration, span: Duration) -> u32 {
        let schedule = Self { base, cap, max_attempts: u32::MAX };
        let mut covered = Duration::ZERO;
        let mut attempts: u32 = 1;
        while covered < span {
            let delay = schedule.backoff(attempts, 0.0);
            if delay.is_zero() {
                return u32::MAX;
            }
            covered = covered.saturating_add(delay);
            attempts = match attempts.checked_add(1) {
                Some(next) => next,
                None => return u32::MAX,
            };
        }
        attempts
    }

    /// Delay before retry number `retry` (1 = the delay after attempt 1), lengthened by `jitter`.
    ///
    /// Exactly:
    ///
    /// ```text
    /// plain    = min(cap, base * 2^(retry - 1))          (saturating; retry 0 counts as 1)
    /// jittered = min(cap, plain * (1 + j / 4))           (j = jitter clamped to [0, 1]; NaN counts as 0)
    /// backoff  = max(plain, jittered)
    /// ```
    ///
    /// so jitter adds up to 25 % and never shortens a delay: a schedule computed without jitter is a lower
    /// bound, and [`attempts_to_cover`](Self::attempts_to_cover) still holds. Delays that reached the cap get
    /// no jitter; by then the jitter of the earlier, shorter delays has already spread deliveries that failed
    /// together.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let exponent = retry.max(1) - 1;
        let plain = 2u32
            .checked_pow(exponent)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.cap, |delay| delay.min(self.cap));
        let jitter = if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) };
        if jitter == 0.0 || plain >= self.cap {
            return plain;
        }
        let jittered = Duration::try_from_secs_f64(plain.as_secs_f64() * (1.0 + jitter / 4.0)).unwrap_or(self.cap);
        jittered.min(self.cap).max(plain)
    }

    /// Decides what one attempt's outcome means. `attempt` is this attempt's number (1-based); `jitter` in
    /// `[0, 1)` (see [`backoff`](Self::backoff)).
    ///
    /// A retry waits `min(cap, max(backoff(attempt, jitter), Retry-After))`: never sooner than the endpoint asked,
    /// never longer than the cap.
    pub fn decide(&self, outcome: &SendOutcome, attempt: u32, jitter: f64) -> Decision {
        let (reason, retry_after) = match outcome {
            SendOutcome::Response { status, retry_after, .. } => match Class::of(*status) {
                Class::Success => return Decision::Success,
                Class::Redirect => {
                    return Decision::Failed {
                        reason: format!("HTTP {status}: redirect (3xx) not followed"),
                        disable_webhook: false,
                    }
                }
                Class::Gone => {
                    return Decision::Failed {
                        reason: format!("HTTP {status}: endpoint gone, webhook disabled"),
                        disable_webhook: true,
                    }
                }
                Class::Terminal => {
                    return Decision::Failed { reason: format!("HTTP {status}"), disable_webhook: false }
                }
                Class::Retryable => (format!("HTTP {status}"), *retry_after),
            },
            SendOutcome::Blocked { reason, .. } => {
                return Decision::Failed { reason: reason.clone(), disable_webhook: false };
            }
            SendOutcome::Timeout { duration } => (format!("timeout after {} ms", duration.as_millis()), None),
            SendOutcome::Network { error, .. } => (error.clone(), None),
        };
        if attempt >= self.max_attempts.max(1) {
            return Decision::Dead { reason: format!("{reason} (gave up after {attempt} attempts)") };
        }
        let delay = self.backoff(attempt, jitter);
        let after = retry_after.map_or(delay, |asked| delay.max(asked)).min(self.cap);
        Decision::Retry { after, reason }
    }
}

/// How the status of an answer is handled.
enum Class {
    Success,
    Redirect,
    Gone,
    Retryable,
    Terminal,
}

impl Class {
    fn of(status: u16) -> Self {
        match status {
            200..=299 => Self::Success,
            300..=399 => Self::Redirect,
            410 => Self::Gone,
            408 | 425 | 429 | 500..=599 => Self::Retryable,
            _ => Self::Terminal,
        }
    }
}

/// What to do with a delivery after one attempt; maps one-to-one onto ack / NAK-with-delay / term.
///
/// Every `reason` is short and human ("HTTP 503", "timeout after 10000 ms", "egress: …"), meant for the delivery
/// log's `last_error`; none carries a URL path or query, a header or a body.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Delivered (2xx): ack.
    Success,
    /// Retry after `after` (NAK with this delay).
    Retry {
        /// The NAK delay.
        after: Duration,
        /// Why this attempt failed.
        reason: String,
    },
    /// Terminal: a non-retryable answer, a redirect or a blocked target (term the message). `disable_webhook` is
    /// true for 410 Gone.
    Failed {
        /// Why the delivery failed.
        reason: String,
        /// The endpoint said it is gone for good: disable the workspace's webhook.
        disable_webhook: bool,
    },
    /// Retryable but `max_attempts` reached (term; the delivery is `dead`).
    Dead {
        /// The last attempt's failure, and the attempt count.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn policy() -> RetryPolicy {
        RetryPolicy { base: Duration::from_secs(5), cap: Duration::from_secs(3600), max_attempts: 10 }
    }

    fn answer(status: u16) -> SendOutcome {
        SendOutcome::Response { status, retry_after: None, excerpt: String::new(), duration: SECOND }
    }

    fn answer_after(status: u16, retry_after: Duration) -> SendOutcome {
        SendOutcome::Response { status, retry_after: Some(retry_after), excerpt: String::new(), duration: SECOND }
    }

    fn retry(after: Duration, reason: &str) -> Decision {
        Decision::Retry { after, reason: reason.to_owned() }
    }

    fn failed(reason: &str) -> Decision {
        Decision::Failed { reason: reason.to_owned(), disable_webhook: false }
    }

    #[test]
    fn decision_matrix() {
        let five = Duration::from_secs(5);
        let redirect = |status: u16| failed(&format!("HTTP {status}: redirect (3xx) not followed"));
        let table: Vec<(SendOutcome, Decision)> = vec![
            (answer(200), Decision::Success),
            (answer(201), Decision::Success),
            (answer(204), Decision::Success),
            (answer(301), redirect(301)),
            (answer(302), redirect(302)),
            (answer(307), redirect(307)),
            (answer(308), redirect(308)),
            (answer(400), failed("HTTP 400")),
            (answer(401), failed("HTTP 401")),
            (answer(403), failed("HTTP 403")),
            (answer(404), failed("HTTP 404")),
            (answer(408), retry(five, "HTTP 408")),
            (answer(409), failed("HTTP 409")),
            (
                answer(410),
                Decision::Failed {
                    reason: "HTTP 410: endpoint gone, webhook disabled".to_owned(),
                    disable_webhook: true,
                },
            ),
            (answer(422), failed("HTTP 422")),
            (answer(425), retry(five, "HTTP 425")),
            (answer(429), retry(five, "HTTP 429")),
            (answer(500), retry(five, "HTTP 500")),
            (answer(502), retry(five, "HTTP 502")),
            (answer(503), retry(five, "HTTP 503")),
            (answer(504), retry(five, "HTTP 504")),
            (SendOutcome::Timeout { duration: Duration::from_millis(10_000) }, retry(five, "timeout after 10000 ms")),
            (
                SendOutcome::Network {
                    error: "connect error: Connection refused (os error 111)".to_owned(),
                    duration: SECOND,
                },
                retry(five, "connect error: Connection refused (os error 111)"),
            ),
            (
                SendOutcome::Blocked {
                    reason: "egress: crm.example.com resolves only to blocked addresses: 127.0.0.1 (loopback)"
                        .to_owned(),
                    duration: SECOND,
                },
                failed("egress: crm.example.com resolves only to blocked addresses: 127.0.0.1 (loopback)"),
            ),
        ];
        for (outcome, expected) in table {
            assert_eq!(policy().decide(&outcome, 1, 0.0), expected, "{outcome:?}");
        }
    }

    #[test]
    fn odd_statuses() {
        assert_eq!(policy().decide(&answer(100), 1, 0.0), failed("HTTP 100"));
        assert_eq!(policy().decide(&answer(299), 1, 0.0), Decision::Success);
        assert_eq!(policy().decide(&answer(599), 1, 0.0), retry(Duration::from_secs(5), "HTTP 599"));
        assert_eq!(policy().decide(&answer(600), 1, 0.0), failed("HTTP 600"));
    }

    #[test]
    fn retry_after_above_backoff_is_honoured() {
        // Backoff after attempt 1 is 5 s; the endpoint asks for 120 s.
        let decision = policy().decide(&answer_after(429, Duration::from_secs(120)), 1, 0.0);
        assert_eq!(decision, retry(Duration::from_secs(120), "HTTP 429"));
    }

    #[test]
    fn retry_after_below_backoff_does_not_shorten() {
        // Backoff after attempt 4 is 40 s; the endpoint asks for 1 s (or a past date: zero).
        for asked in [SECOND, Duration::ZERO] {
            let decision = policy().decide(&answer_after(503, asked), 4, 0.0);
            assert_eq!(decision, retry(Duration::from_secs(40), "HTTP 503"));
        }
    }

    #[test]
    fn retry_after_is_capped() {
        let decision = policy().decide(&answer_after(503, Duration::from_secs(86_400)), 1, 0.0);
        assert_eq!(decision, retry(Duration::from_secs(3600), "HTTP 503"));
    }

    #[test]
    fn retry_after_is_ignored_on_terminal_answers() {
        let decision = policy().decide(&answer_after(400, Duration::from_secs(60)), 1, 0.0);
        assert_eq!(decision, failed("HTTP 400"));
    }

    #[test]
    fn exhaustion_is_dead_at_max_attempts_exactly() {
        let policy = policy();
        let outcome = answer(503);
        assert!(matches!(policy.decide(&outcome, 9, 0.5), Decision::Retry { .. }));
        assert_eq!(
            policy.decide(&outcome, 10, 0.5),
            Decision::Dead { reason: "HTTP 503 (gave up after 10 attempts)".to_owned() }
        );
        assert!(matches!(policy.decide(&outcome, 11, 0.5), Decision::Dead { .. }));
        // Non-retryable outcomes stay what they are on the last attempt.
        assert_eq!(policy.decide(&answer(200), 10, 0.0), Decision::Success);
        assert_eq!(policy.decide(&answer(404), 10, 0.0), failed("HTTP 404"));
        // A budget of one attempt (or zero, treated as one) never retries.
        for max_attempts in [0, 1] {
            let single = RetryPolicy { max_attempts, ..policy };
            assert!(matches!(single.decide(&SendOutcome::Timeout { duration: SECOND }, 1, 0.0), Decision::Dead { .. }));
        }
    }

    #[test]
    fn attempts_to_cover_a_day() {
        let (base, cap, day) = (Duration::from_secs(5), Duration::from_secs(3600), Duration::from_secs(86_400));
        let attempts = RetryPolicy::attempts_to_cover(base, cap, day);
        assert_eq!(attempts, 34);
        let policy = RetryPolicy { base, cap, max_attempts: attempts };
        let span = |attempts: u32| (1..attempts).map(|retry| policy.backoff(retry, 0.0)).sum::<Duration>();
        assert!(span(attempts) >= day, "{:?}", span(attempts));
        assert!(span(attempts - 1) < day, "{:?}", span(attempts - 1));
        assert_eq!(RetryPolicy::default(), policy);
    }

    #[test]
    fn attempts_to_cover_edges() {
        let (base, cap) = (Duration::from_secs(5), Duration::from_secs(3600));
        assert_eq!(RetryPolicy::attempts_to_cover(base, cap, Duration::ZERO), 1);
        assert_eq!(RetryPolicy::attempts_to_cover(base, cap, Duration::from_secs(5)), 2);
        assert_eq!(RetryPolicy::attempts_to_cover(base, cap, Duration::from_secs(6)), 3);
        assert_eq!(RetryPolicy::attempts_to_cover(Duration::ZERO, cap, SECOND), u32::MAX);
        assert_eq!(RetryPolicy::attempts_to_cover(base, Duration::ZERO, SECOND), u32::MAX);
        // The cap below the base caps the first delay too.
        assert_eq!(RetryPolicy::attempts_to_cover(base, SECOND, Duration::from_secs(10)), 11);
    }

    #[test]
    fn backoff_doubles_until_the_cap() {
        let policy = policy();
        let delays: Vec<u64> = (1..=14).map(|retry| policy.backoff(retry, 0.0).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600, 3600]);
        assert_eq!(policy.backoff(0, 0.0), policy.backoff(1, 0.0));
        for retry in 1..200 {
            assert!(policy.backoff(retry + 1, 0.0) >= policy.backoff(retry, 0.0), "retry {retry}");
            assert!(policy.backoff(retry, 0.0) <= policy.cap);
        }
        assert_eq!(policy.backoff(u32::MAX, 0.0), policy.cap);
        let huge = RetryPolicy { base: Duration::MAX, cap: Duration::MAX, max_attempts: 3 };
        assert_eq!(huge.backoff(3, 0.9), Duration::MAX);
    }

    #[test]
    fn jitter_never_shortens_and_stays_under_the_cap() {
        let policy = policy();
        for retry in 1..=20 {
            let plain = policy.backoff(retry, 0.0);
            for jitter in [0.0, 1e-9, 0.1, 0.25, 0.5, 0.75, 0.999_999, 1.0, 7.0, -1.0, f64::NAN] {
                let delay = policy.backoff(retry, jitter);
                assert!(delay >= plain, "retry {retry} jitter {jitter}: {delay:?} < {plain:?}");
                assert!(delay <= policy.cap, "retry {retry} jitter {jitter}");
                assert!(delay.as_secs_f64() <= plain.as_secs_f64() * 1.25 + 1e-6, "retry {retry} jitter {jitter}");
            }
        }
        assert_eq!(policy.backoff(1, 0.5), Duration::from_millis(5625));
        assert_eq!(policy.backoff(10, 0.5), Duration::from_secs(2880));
        // 2560 s * 1.2497 is above a 3000 s cap: capped again.
        let low_cap = RetryPolicy { cap: Duration::from_secs(3000), ..policy };
        assert_eq!(low_cap.backoff(10, 0.999), Duration::from_secs(3000));
        // Jittered decisions still honour Retry-After.
        let decision = policy.decide(&answer_after(503, Duration::from_secs(7)), 1, 0.5);
        assert_eq!(decision, retry(Duration::from_secs(7), "HTTP 503"));
    }
}
