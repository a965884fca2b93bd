//! Fairness and endpoint health, per workspace, in this process.
//!
//! [`Slots`] caps the deliveries in flight per workspace, so a workspace whose endpoint hangs holds at most that
//! many of the process's slots and the others keep flowing. [`Breakers`] pauses an endpoint after repeated
//! consecutive failures: while paused its messages are handed back with a delay instead of hammering it; when the
//! pause ends one probe goes through, and its outcome closes the breaker or pauses it again for twice as long.
//!
//! Both are per process by design: no coordination on the hot path. With N replicas a failing endpoint sees at
//! most N probes per pause, which is the price of not sharing state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The longest pause.
pub const MAX_PAUSE: Duration = Duration::from_secs(600);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// In-flight counts per workspace.
#[derive(Clone)]
pub struct Slots {
    limit: usize,
    taken: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// A taken slot; released on drop.
pub struct Slot {
    slots: Slots,
    workspace_id: Uuid,
}

impl Slots {
    pub fn new(limit: usize) -> Self {
        Slots { limit, taken: Arc::default() }
    }

    /// Takes a slot for the workspace, or `None` when it is at its limit.
    pub fn try_take(&self, workspace_id: Uuid) -> Option<Slot> {
        let mut taken = lock(&self.taken);
        let n = taken.entry(workspace_id).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot { slots: self.clone(), workspace_id })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = lock(&self.slots.taken);
        if let Some(n) = taken.get_mut(&self.workspace_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                taken.remove(&self.workspace_id);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    paused_until: Option<Instant>,
    pause: Duration,
    probing: bool,
}

/// What the breaker allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send normally.
    Go,
    /// Send: this is the probe of a paused endpoint.
    Probe,
    /// Hand the message back for this long.
    Paused(Duration),
}

#[derive(Clone)]
pub struct Breakers {
    threshold: u32,
    first_pause: Duration,
    state: Arc<Mutex<HashMap<Uuid, Breaker>>>,
}

impl Breakers {
    pub fn new(threshold: u32, first_pause: Duration) -> Self {
        Breakers { threshold, first_pause, state: Arc::default() }
    }

    pub fn admit(&self, workspace_id: Uuid) -> Admission {
        let mut state = lock(&self.state);
        let Some(b) = state.get_mut(&workspace_id) else { return Admission::Go };
        match b.paused_until {
            None => Admission::Go,
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    Admission::Paused(until - now)
                } else if b.probing {
                    // A probe is out; others wait a little for its verdict.
                    Admission::Paused(Duration::from_secs(1))
                } else {
                    b.probing = true;
                    Admission::Probe
                }
            }
        }
    }

    /// Records that the endpoint answered in a way that needs no retry (success or a terminal answer).
    pub fn succeeded(&self, workspace_id: Uuid) {
        lock(&self.state).remove(&workspace_id);
    }

    /// Records a retryable failure; returns true when this failure paused the endpoint.
    pub fn failed(&self, workspace_id: Uuid) -> bool {
        let mut state = lock(&self.state);
        let b = state.entry(workspace_id).or_default();
        b.consecutive_failures += 1;
        let was_probe = std::mem::replace(&mut b.probing, false);
        if was_probe || (b.paused_until.is_none() && b.consecutive_failures >= self.threshold) {
            b.pause = if b.pause.is_zero() { self.first_pause } else { (b.pause * 2).min(MAX_PAUSE) };
            b.paused_until = Some(Instant::now() + b.pause);
            return true;
        }
        false
    }

    /// A probe that did not complete (handed back at shutdown) lets the next message probe.
    pub fn probe_abandoned(&self, workspace_id: Uuid) {
        if let Some(b) = lock(&self.state).get_mut(&workspace_id) {
            b.probing = false;
        }
    }

    /// Endpoints currently paused.
    pub fn paused(&self) -> usize {
        let now = Instant::now();
        lock(&self.state).values().filter(|b| b.paused_until.is_some_and(|u| u > now) || b.probing).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_a_workspace_and_free_on_drop() {
        let slots = Slots::new(2);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let s1 = slots.try_take(a).unwrap();
        let _s2 = slots.try_take(a).unwrap();
        assert!(slots.try_take(a).is_none());
        assert!(slots.try_take(b).is_some(), "another workspace is not affected");
        drop(s1);
        assert!(slots.try_take(a).is_some());
    }

    #[test]
    fn breaker_pauses_after_threshold_probes_and_doubles() {
        let breakers = Breakers::new(3, Duration::from_millis(30));
        let ws = Uuid::now_v7();
        assert!(!breakers.failed(ws));
        assert!(!breakers.failed(ws));
        assert_eq!(breakers.admit(ws), Admission::Go);
        assert!(breakers.failed(ws), "third consecutive failure pauses");
        assert!(matches!(breakers.admit(ws), Admission::Paused(d) if d <= Duration::from_millis(30)));
        assert_eq!(breakers.paused(), 1);
        std::thread::sleep(Duration::from_millis(35));
        assert_eq!(breakers.admit(ws), Admission::Probe);
        assert!(matches!(breakers.admit(ws), Admission::Paused(_)), "one probe at a time");
        assert!(breakers.failed(ws), "a failed probe pauses again");
        assert!(matches!(breakers.admit(ws), Admission::Paused(d) if d > Duration::from_millis(30)), "twice as long");
        breakers.succeeded(ws);
        assert_eq!(breakers.admit(ws), Admission::Go);
        assert_eq!(breakers.paused(), 0);
    }

    #[test]
    fn a_success_resets_the_count() {
        let breakers = Breakers::new(2, Duration::from_secs(1));
        let ws = Uuid::now_v7();
        breakers.failed(ws);
        breakers.succeeded(ws);
        assert!(!breakers.failed(ws));
    }
}
