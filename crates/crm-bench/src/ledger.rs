//! The exact ledger of a run: every event the API accepted, every webhook the receiver got, and the join of the
//! two. An event is keyed by (row id, row version): the API response names it and so does the webhook body, and
//! each accepted change has its own version.
//!
//! `accepted = delivered + missing (+ the events of a hanging endpoint, which are not expected)` holds by
//! construction; duplicates (a key received more than once) are counted apart, since at-least-once delivery
//! allows them.

use crate::scenario::Class;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub type Key = (Uuid, i64);

/// Which part of a run an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Warmup,
    Steady,
}

#[derive(Default)]
struct Inner {
    accepted: HashMap<Key, (Instant, Phase, Class)>,
    received: HashMap<Key, (Instant, u32)>,
    total_received: u64,
}

#[derive(Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

/// The ledger's verdict.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub accepted: u64,
    pub delivered: u64,
    pub missing: u64,
    pub duplicates: u64,
    /// Steady-phase end-to-end latencies (first receipt minus scheduled time), sorted, of the events expected
    /// to arrive (not those of a hanging endpoint).
    pub e2e: Vec<Duration>,
    /// The same by workspace class, sorted.
    pub e2e_by_class: HashMap<Class, Vec<Duration>>,
    /// The [`SLOWEST`] steady-phase events, slowest first: when each was scheduled (after the first steady-phase
    /// event's schedule) and its end-to-end latency. Slow events close together in time are one stall.
    pub slowest: Vec<(Duration, Duration)>,
    pub steady_accepted: u64,
    /// Accepted events of a hanging endpoint's workspace: not expected, not counted as missing.
    pub hanging: u64,
}

/// How many of the slowest events a [`Report`] names.
pub const SLOWEST: usize = 10;

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The API accepted a change scheduled at `scheduled`, of a workspace of `class`.
    pub fn accept(&self, key: Key, scheduled: Instant, phase: Phase, class: Class) {
        self.lock().accepted.insert(key, (scheduled, phase, class));
    }

    /// The receiver got a webhook for `key` at `at`.
    pub fn receive(&self, key: Key, at: Instant) {
        let mut inner = self.lock();
        inner.total_received += 1;
        inner.received.entry(key).and_modify(|(_, n)| *n += 1).or_insert((at, 1));
    }

    /// The keys received more than once, with how often.
    pub fn duplicated(&self) -> Vec<(Key, u32)> {
        self.lock().received.iter().filter(|(_, (_, n))| *n > 1).map(|(k, (_, n))| (*k, *n)).collect()
    }

    pub fn accepted(&self) -> u64 {
        self.lock().accepted.len() as u64
    }

    /// Accepted events not yet received (of the workspaces whose events are expected).
    pub fn outstanding(&self) -> u64 {
        let inner = self.lock();
        inner.accepted.iter().filter(|(k, v)| v.2 != Class::Hanging && !inner.received.contains_key(k)).count() as u64
    }

    /// Webhooks whose first receipt fell inside `[from, to)`: the delivered throughput of a window.
    pub fn received_between(&self, from: Instant, to: Instant) -> u64 {
        self.lock().received.values().filter(|(at, _)| *at >= from && *at < to).count() as u64
    }

    pub fn report(&self) -> Report {
        let inner = self.lock();
        let mut report = Report { accepted: inner.accepted.len() as u64, ..Default::default() };
        let mut timed = Vec::new();
        for (key, (scheduled, phase, class)) in &inner.accepted {
            if *phase == Phase::Steady {
                report.steady_accepted += 1;
            }
            if *class == Class::Hanging {
                report.hanging += 1;
                continue;
            }
            match inner.received.get(key) {
                Some((first, _)) => {
                    report.delivered += 1;
                    if *phase == Phase::Steady {
                        let e2e = first.saturating_duration_since(*scheduled);
                        report.e2e.push(e2e);
                        report.e2e_by_class.entry(*class).or_default().push(e2e);
                        timed.push((*scheduled, e2e));
                    }
                }
                None => report.missing += 1,
            }
        }
        report.duplicates = inner.received.values().map(|(_, n)| u64::from(n.saturating_sub(1))).sum();
        report.e2e.sort_unstable();
        report.e2e_by_class.values_mut().for_each(|v| v.sort_unstable());
        if let Some(start) = timed.iter().map(|(at, _)| *at).min() {
            timed.sort_unstable_by_key(|(_, e2e)| std::cmp::Reverse(*e2e));
            report.slowest = timed.iter().take(SLOWEST).map(|(at, e2e)| (at.duration_since(start), *e2e)).collect();
        }
        report
    }
}

/// The `q` quantile (0..=1) of sorted values, in milliseconds.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_is_delivered_plus_missing_and_duplicates_are_apart() {
        let ledger = Ledger::default();
        let t0 = Instant::now();
        let keys: Vec<Key> = (0..4).map(|v| (Uuid::nil(), v)).collect();
        for k in &keys {
            ledger.accept(*k, t0, Phase::Steady, Class::Small);
        }
        ledger.receive(keys[0], t0 + Duration::from_millis(5));
        ledger.receive(keys[0], t0 + Duration::from_millis(9));
        ledger.receive(keys[1], t0 + Duration::from_millis(7));
        // A receipt that arrives before the API response was processed still counts.
        ledger.receive((Uuid::max(), 1), t0);
        ledger.accept((Uuid::max(), 1), t0, Phase::Warmup, Class::Hot);
        // A hanging endpoint's event is neither delivered nor missing.
        ledger.accept((Uuid::max(), 2), t0, Phase::Steady, Class::Hanging);
        let r = ledger.report();
        assert_eq!((r.accepted, r.delivered, r.missing, r.duplicates, r.hanging), (6, 3, 2, 1, 1));
        assert_eq!(r.accepted, r.delivered + r.missing + r.hanging);
        assert_eq!(r.e2e, vec![Duration::from_millis(5), Duration::from_millis(7)]);
        assert_eq!(
            r.slowest,
            vec![(Duration::ZERO, Duration::from_millis(7)), (Duration::ZERO, Duration::from_millis(5))]
        );
        assert_eq!(ledger.outstanding(), 2);
        assert_eq!(ledger.duplicated(), vec![(keys[0], 2)]);
    }

    #[test]
    fn quantiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&v, 0.5), 51.0);
        assert_eq!(quantile_ms(&v, 0.99), 99.0);
        assert_eq!(quantile_ms(&[], 0.99), 0.0);
    }
}
