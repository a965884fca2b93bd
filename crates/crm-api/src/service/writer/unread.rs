//! Writing a batch of new leads without reading first.
//!
//! A batch of interests (without `Idempotency-Key`s) is often all new leads (an import, a form): the read would
//! find nothing, so the writer can skip it and write the batch as all new, one round trip instead of two. If a lead exists after all, the
//! statement refuses itself (nothing is written) and the batch is read and written as usual. That miss costs more
//! than the read it was meant to save (a refused write), so the writer guesses only where a miss is unlikely:
//!
//! - **Not for leads it knows.** A lead this process has written lately (a repeat interest in it is common: a reply
//!   to a campaign) is read first. [`Known`] remembers them, shared by the writers, as 64-bit hashes of (workspace,
//!   lowercased email) in two generations of at most [`Known::GENERATION`] each (about 2.5 MiB at most); a hash
//!   collision only costs a read.
//! - **Not while guesses keep missing.** Leads written by another replica, or before this process started, are
//!   not known: the writer writes unread while the success rate of its recent tries (a moving average) is at least
//!   [`Unread::MIN_RATE`], and otherwise tries once every [`Unread::PROBE_EVERY`] eligible batches, to notice when
//!   new leads are the rule again.

use super::Change;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// One writer's view of whether to write a batch unread.
#[derive(Debug)]
pub(super) struct Unread {
    /// Recent tries' success rate, each new try weighing [`Unread::WEIGHT`].
    rate: f64,
    /// Eligible batches read since the last unread try.
    since_try: u32,
    known: Arc<Mutex<Known>>,
}

impl Unread {
    pub(super) const MIN_RATE: f64 = 0.9;
    const WEIGHT: f64 = 0.1;
    pub(super) const PROBE_EVERY: u32 = 64;

    pub(super) fn new(known: Arc<Mutex<Known>>) -> Unread {
        Unread { rate: 1.0, since_try: 0, known }
    }

    /// Whether to write `changes` unread now: interests only, without `Idempotency-Key`s (a replayed key would
    /// refuse the statement as an existing lead does), none in a lead this process has written lately, and recent
    /// tries mostly right (or a probe is due).
    pub(super) fn try_now<'a>(&mut self, changes: impl IntoIterator<Item = &'a Change>) -> bool {
        {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            for change in changes {
                match change {
                    Change::Interest { workspace_id, interest, key: None }
                        if !known.contains(*workspace_id, &interest.email) => {}
                    _ => return false,
                }
            }
        }
        if self.rate >= Self::MIN_RATE || self.since_try + 1 >= Self::PROBE_EVERY {
            self.since_try = 0;
            true
        } else {
            self.since_try += 1;
            false
        }
    }

    /// How an unread try fared: written, or refused because a lead existed.
    pub(super) fn fared(&mut self, written: bool) {
        self.rate += Self::WEIGHT * (if written { 1.0 } else { 0.0 } - self.rate);
    }

    /// Remembers the leads of a batch that was written: they exist now.
    pub(super) fn remember<'a>(&self, changes: impl IntoIterator<Item = &'a Change>) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for change in changes {
            if let Change::Interest { workspace_id, interest, .. } = change {
                known.insert(*workspace_id, &interest.email);
            }
        }
    }
}

/// Leads this process has written lately, by a hash of (workspace, lowercased email).
#[derive(Debug)]
pub(super) struct Known {
    hasher: RandomState,
    now: HashSet<u64>,
    before: HashSet<u64>,
}

impl Known {
    /// Hashes in one generation: when the current one is full it becomes the previous one, and the previous one
    /// is forgotten.
    pub(super) const GENERATION: usize = 65_536;

    pub(super) fn shared() -> Arc<Mutex<Known>> {
        Arc::new(Mutex::new(Known { hasher: RandomState::new(), now: HashSet::new(), before: HashSet::new() }))
    }

    fn key(&self, workspace_id: Uuid, email: &str) -> u64 {
        self.hasher.hash_one((workspace_id, email.to_lowercase()))
    }

    pub(super) fn contains(&self, workspace_id: Uuid, email: &str) -> bool {
        let key = self.key(workspace_id, email);
        self.now.contains(&key) || self.before.contains(&key)
    }

    pub(super) fn insert(&mut self, workspace_id: Uuid, email: &str) {
        let key = self.key(workspace_id, email);
        if self.now.len() >= Self::GENERATION {
            self.before = std::mem::take(&mut self.now);
        }
        self.now.insert(key);
    }
}

#[cfg(test)]
mod tests {
    use super::{Known, Unread};
    use crate::domain::interest::InterestBody;
    use crate::service::writer::Change;
    use uuid::Uuid;

    fn interest(ws: Uuid, email: &str) -> Change {
        let body = serde_json::json!({"lead": {"email": email}, "interest": {"type": "positive_reply"}});
        let interest = serde_json::from_value::<InterestBody>(body).unwrap().validate().unwrap();
        Change::Interest { workspace_id: ws, interest, key: None }
    }

    #[test]
    fn unread_writes_stop_after_misses_and_are_probed_now_and_then() {
        let ws = Uuid::now_v7();
        let new = [interest(ws, "new@example.com")];
        let mut unread = Unread::new(Known::shared());
        assert!(unread.try_now(&new), "new leads are expected at first");
        for _ in 0..3 {
            unread.fared(false);
        }
        let tries: Vec<bool> = (0..Unread::PROBE_EVERY).map(|_| unread.try_now(&new)).collect();
        assert_eq!(tries.iter().filter(|t| **t).count(), 1, "one probe in {} batches", Unread::PROBE_EVERY);
        assert!(tries[Unread::PROBE_EVERY as usize - 1]);
        // Probes that succeed bring the rate back, and unread writes with it.
        let mut batches = 0;
        while unread.rate < Unread::MIN_RATE {
            if unread.try_now(&new) {
                unread.fared(true);
            }
            batches += 1;
            assert!(batches < 64 * 64, "never back");
        }
        assert!(unread.try_now(&new));
    }

    #[test]
    fn a_batch_with_idempotency_keys_is_read_first() {
        let ws = Uuid::now_v7();
        let mut keyed = interest(ws, "new@example.com");
        if let Change::Interest { key, .. } = &mut keyed {
            *key = Some(crate::service::writer::IdempotencyKey { key: "k1".into(), request_hash: vec![1] });
        }
        let mut unread = Unread::new(Known::shared());
        assert!(!unread.try_now(&[keyed]));
        assert!(unread.try_now(&[interest(ws, "new@example.com")]));
    }

    #[test]
    fn a_batch_with_a_lead_written_lately_is_read_first() {
        let (ws, other) = (Uuid::now_v7(), Uuid::now_v7());
        let mut unread = Unread::new(Known::shared());
        unread.remember(&[interest(ws, "Known@Example.com")]);
        assert!(!unread.try_now(&[interest(ws, "new@example.com"), interest(ws, "known@example.com")]));
        assert!(unread.try_now(&[interest(other, "known@example.com")]), "another workspace's lead is another lead");
        assert!(unread.try_now(&[interest(ws, "new@example.com")]));
    }

    #[test]
    fn known_leads_are_bounded_to_two_generations() {
        let ws = Uuid::now_v7();
        let known = Known::shared();
        let mut known = known.lock().unwrap();
        known.insert(ws, "first@example.com");
        for i in 0..Known::GENERATION {
            known.insert(ws, &format!("lead{i}@example.com"));
        }
        assert!(known.contains(ws, "first@example.com"), "in the previous generation");
        for i in 0..Known::GENERATION {
            known.insert(ws, &format!("later{i}@example.com"));
        }
        assert!(!known.contains(ws, "first@example.com"), "forgotten two generations on");
        assert!(known.now.len() + known.before.len() <= 2 * Known::GENERATION);
    }
}
