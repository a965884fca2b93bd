//! The scheduling policy, with simulated time: no broker, no HTTP.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn config(concurrency: usize, buffer: usize) -> SchedulerConfig {
    SchedulerConfig { concurrency, buffer, pause_after_failures: 5, first_pause: Duration::from_secs(30) }
}

/// Everything known and unlimited.
fn unlimited(_: Uuid) -> Pacing {
    Pacing::Unlimited
}

/// A simulated worker: endpoints answer after their latency (or time out); the clock moves to the next answer.
struct Sim {
    sched: Scheduler<u64>,
    now: Instant,
    /// (finishes at, endpoint, probe, feedback)
    running: Vec<(Instant, Uuid, bool, Feedback)>,
    sent: HashMap<Uuid, usize>,
    max_in_flight: HashMap<Uuid, usize>,
    next_id: u64,
}

impl Sim {
    fn new(concurrency: usize, buffer: usize) -> Sim {
        Sim {
            sched: Scheduler::new(config(concurrency, buffer)),
            now: Instant::now(),
            running: Vec::new(),
            sent: HashMap::new(),
            max_in_flight: HashMap::new(),
            next_id: 0,
        }
    }

    /// Offers `n` messages for `endpoint`; returns how many were taken.
    fn offer(&mut self, endpoint: Uuid, n: usize) -> usize {
        (0..n)
            .filter(|_| {
                self.next_id += 1;
                self.sched.offer(endpoint, self.next_id, self.now).is_ok()
            })
            .count()
    }

    /// Starts what may start; `answer` says how each endpoint answers.
    fn dispatch(&mut self, pacing: &impl Fn(Uuid) -> Pacing, answer: &impl Fn(Uuid) -> (Duration, Feedback)) {
        while let Some(d) = self.sched.next(self.now, pacing) {
            let (took, feedback) = answer(d.endpoint);
            self.running.push((self.now + took, d.endpoint, d.probe, feedback));
            *self.sent.entry(d.endpoint).or_default() += 1;
            let in_flight = self.running.iter().filter(|r| r.1 == d.endpoint).count();
            let max = self.max_in_flight.entry(d.endpoint).or_default();
            *max = (*max).max(in_flight);
        }
    }

    /// Moves the clock to the next answer (or wake-up) and completes what finished by then; what the scheduler
    /// hands back is dropped (it would come back to JetStream).
    fn step(&mut self) {
        self.sched.take_evicted();
        let next_answer = self.running.iter().map(|r| r.0).min();
        let wake = self.sched.next_wake(self.now);
        let Some(to) = [next_answer, wake].into_iter().flatten().min() else { return };
        self.now = to.max(self.now);
        let (done, running): (Vec<_>, Vec<_>) = self.running.drain(..).partition(|r| r.0 <= self.now);
        self.running = running;
        for (_, endpoint, probe, feedback) in done {
            self.sched.complete(endpoint, probe, feedback, self.now);
            self.sched.settled();
        }
    }

    fn run(
        &mut self,
        rounds: usize,
        refill: &mut impl FnMut(&mut Sim),
        pacing: &impl Fn(Uuid) -> Pacing,
        answer: &impl Fn(Uuid) -> (Duration, Feedback),
    ) {
        for _ in 0..rounds {
            refill(self);
            self.dispatch(pacing, answer);
            self.step();
        }
    }
}

fn fast(took: Duration) -> (Duration, Feedback) {
    (took, Feedback::Settled(took))
}

#[test]
fn one_busy_endpoint_alone_gets_every_slot() {
    let mut sim = Sim::new(32, 256);
    let hot = Uuid::now_v7();
    let mut refill = |sim: &mut Sim| {
        let room = 256 - sim.sched.held();
        sim.offer(hot, room);
    };
    sim.run(300, &mut refill, &unlimited, &|_| fast(50 * MS));
    assert_eq!(sim.max_in_flight[&hot], 32, "the one endpoint used the whole worker");
}

#[test]
fn two_busy_endpoints_share_the_slots_evenly() {
    let mut sim = Sim::new(16, 256);
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut refill = |sim: &mut Sim| {
        // Both offer more than the worker can take, alike.
        let room = (256 - sim.sched.held()) / 2;
        for endpoint in [a, b] {
            sim.offer(endpoint, room);
        }
    };
    sim.run(400, &mut refill, &unlimited, &|_| fast(10 * MS));
    let (sa, sb) = (sim.sent[&a] as f64, sim.sent[&b] as f64);
    let share = sa / (sa + sb);
    assert!((0.45..=0.55).contains(&share), "shares {sa} and {sb}");
}

#[test]
fn a_hanging_endpoint_shrinks_to_one_slot_and_the_others_keep_the_rest() {
    let mut sim = Sim::new(16, 256);
    let (hang, ok) = (Uuid::now_v7(), Uuid::now_v7());
    let answer = |e: Uuid| {
        if e == hang {
            let timeout = Duration::from_secs(2);
            (timeout, Feedback::Retryable { took: timeout, overloaded: true, retry_after: None })
        } else {
            fast(5 * MS)
        }
    };
    let mut refill = |sim: &mut Sim| {
        sim.offer(hang, 10);
        let room = 256usize.saturating_sub(sim.sched.held()) / 2;
        sim.offer(ok, room);
    };
    sim.run(3000, &mut refill, &unlimited, &answer);
    let snapshot = sim.sched.snapshot(sim.now);
    let hanging = snapshot.iter().find(|s| s.endpoint == hang).unwrap();
    assert_eq!(hanging.limit, 1);
    assert!(hanging.queued <= MIN_QUEUE, "a hanging endpoint holds a handful, not the buffer: {}", hanging.queued);
    assert!(sim.max_in_flight[&ok] >= 15, "the other endpoint used the rest: {}", sim.max_in_flight[&ok]);
}

#[test]
fn what_a_slow_endpoint_cannot_hold_is_handed_back_with_its_backlog_as_the_delay() {
    let mut sched: Scheduler<u32> = Scheduler::new(config(16, 256));
    let now = Instant::now();
    let slow = Uuid::now_v7();
    // It answered once, slowly, and timed out since.
    sched.offer(slow, 0, now).unwrap();
    let d = sched.next(now, unlimited).unwrap();
    sched.complete(
        d.endpoint,
        d.probe,
        Feedback::Retryable { took: 10 * 1000 * MS, overloaded: true, retry_after: None },
        now,
    );
    let taken = (1..=50).filter(|i| sched.offer(slow, *i, now).is_ok()).count();
    assert_eq!(taken, MIN_QUEUE);
    let (_, delay) = sched.offer(slow, 99, now).unwrap_err();
    assert!(delay >= Duration::from_secs(10), "the delay reflects the backlog: {delay:?}");
    // A fresh endpoint is not affected.
    assert!(sched.offer(Uuid::now_v7(), 100, now).is_ok());
}

#[test]
fn a_rate_limited_endpoint_is_paced_without_handing_anything_back() {
    let mut sim = Sim::new(32, 256);
    let paced = Uuid::now_v7();
    let pacing = |_: Uuid| Pacing::PerSecond(20.0);
    sim.offer(paced, 30);
    let start = sim.now;
    let mut refill = |_: &mut Sim| {};
    while sim.sent.get(&paced).copied().unwrap_or(0) < 30 {
        sim.run(1, &mut refill, &pacing, &|_| fast(MS));
    }
    let elapsed = sim.now.duration_since(start);
    // One at once, then 20 per second: the last of 30 goes out after about a second and a half.
    assert!(elapsed >= Duration::from_millis(1450) && elapsed <= Duration::from_millis(1600), "{elapsed:?}");
}

#[test]
fn an_endpoint_whose_settings_are_not_known_sends_one_at_a_time() {
    let mut sched: Scheduler<u32> = Scheduler::new(config(16, 256));
    let now = Instant::now();
    let e = Uuid::now_v7();
    for i in 0..4 {
        sched.offer(e, i, now).unwrap();
    }
    assert!(sched.next(now, |_| Pacing::Unknown).is_some());
    assert!(sched.next(now, |_| Pacing::Unknown).is_none());
    assert!(sched.next(now, unlimited).is_some(), "once known, the limit applies");
}

#[test]
fn retry_after_holds_the_endpoint_and_the_breaker_pauses_then_probes() {
    let mut sched: Scheduler<u32> = Scheduler::new(config(16, 256));
    let mut now = Instant::now();
    let e = Uuid::now_v7();
    for i in 0..4 {
        sched.offer(e, i, now).unwrap();
    }
    let d = sched.next(now, unlimited).unwrap();
    let busy = Feedback::Retryable { took: MS, overloaded: true, retry_after: Some(Duration::from_secs(3)) };
    sched.complete(d.endpoint, d.probe, busy, now);
    assert!(sched.next(now, unlimited).is_none(), "held for Retry-After");
    assert_eq!(sched.snapshot(now)[0].state, EndpointState::Paused);
    assert_eq!(sched.next_wake(now), Some(now + Duration::from_secs(3)));
    now += Duration::from_secs(3);
    // The 429 halved the limit (4 to 2): two go, one waits for the endpoint's own limit.
    assert_eq!(std::iter::from_fn(|| sched.next(now, unlimited)).count(), 2);
    let snapshot = sched.snapshot(now);
    assert_eq!((snapshot[0].in_flight, snapshot[0].queued), (2, 1));
    assert_eq!(snapshot[0].state, EndpointState::Limited);
}

#[test]
fn a_retry_after_hands_back_for_about_its_length_not_the_longest_delay() {
    let mut sched: Scheduler<u32> = Scheduler::new(config(16, 256));
    let now = Instant::now();
    let e = Uuid::now_v7();
    sched.offer(e, 0, now).unwrap();
    let d = sched.next(now, unlimited).unwrap();
    let busy = Feedback::Retryable { took: MS, overloaded: true, retry_after: Some(Duration::from_secs(1)) };
    sched.complete(d.endpoint, d.probe, busy, now);
    // Held, it takes a handful, and hands the rest back for the hold plus the drain of what it holds.
    let taken = (1..=50).filter(|i| sched.offer(e, *i, now).is_ok()).count();
    assert_eq!(taken, MIN_QUEUE);
    let (_, delay) = sched.offer(e, 99, now).unwrap_err();
    assert!(delay >= Duration::from_secs(1) && delay < Duration::from_secs(2), "{delay:?}");
}

#[test]
fn a_busy_endpoint_keeps_its_limit_and_rate_while_its_settings_reload() {
    let mut sim = Sim::new(32, 256);
    let hot = Uuid::now_v7();
    let mut refill = |sim: &mut Sim| {
        let room = 256 - sim.sched.held();
        sim.offer(hot, room);
    };
    sim.run(300, &mut refill, &unlimited, &|_| fast(50 * MS));
    assert_eq!(sim.max_in_flight[&hot], 32);
    // The settings' cache entry expired: the scheduler hears "not known" until one delivery reloads them.
    sim.max_in_flight.clear();
    sim.run(50, &mut refill, &|_| Pacing::Unknown, &|_| fast(50 * MS));
    assert_eq!(sim.max_in_flight[&hot], 32, "not one request at a time");

    // Likewise a rate: paced at 20/s, it stays paced (no new bucket, no burst) while the settings reload.
    let mut sim = Sim::new(32, 256);
    let paced = Uuid::now_v7();
    sim.offer(paced, 100);
    let start = sim.now;
    let mut none = |_: &mut Sim| {};
    sim.run(10, &mut none, &|_| Pacing::PerSecond(20.0), &|_| fast(MS));
    while sim.sent[&paced] < 40 {
        sim.run(1, &mut none, &|_| Pacing::Unknown, &|_| fast(MS));
    }
    let elapsed = sim.now.duration_since(start);
    // One at once, then 20 per second: the 40th goes out after about two seconds.
    assert!(elapsed >= Duration::from_millis(1900) && elapsed <= Duration::from_millis(2100), "{elapsed:?}");
}

#[test]
fn an_endpoint_waiting_only_for_a_free_slot_of_the_worker_is_healthy_not_limited() {
    let mut sched: Scheduler<u32> = Scheduler::new(config(2, 256));
    let now = Instant::now();
    let (busy, waiting) = (Uuid::now_v7(), Uuid::now_v7());
    sched.offer(busy, 0, now).unwrap();
    sched.offer(busy, 1, now).unwrap();
    assert_eq!(std::iter::from_fn(|| sched.next(now, unlimited)).count(), 2, "the worker's two slots");
    for i in 2..5 {
        sched.offer(waiting, i, now).unwrap();
    }
    assert!(sched.next(now, unlimited).is_none());
    let state = |id| sched.snapshot(now).into_iter().find(|s| s.endpoint == id).unwrap().state;
    assert_eq!(state(waiting), EndpointState::Healthy, "its own limit (4) is not reached");
    assert_eq!(state(busy), EndpointState::Healthy, "nothing of its own waits");
}

#[test]
fn a_resumed_endpoint_sends_at_once_whether_paused_by_the_breaker_or_held_by_retry_after() {
    let mut sched: Scheduler<u32> = Scheduler::new(config(16, 256));
    let now = Instant::now();
    let (paused, held) = (Uuid::now_v7(), Uuid::now_v7());
    // Five failures in a row pause `paused` for 30 s; a 429 with Retry-After holds `held` for 10 minutes.
    let failed = Feedback::Retryable { took: MS, overloaded: true, retry_after: None };
    for i in 0..5 {
        sched.offer(paused, i, now).unwrap();
        let d = sched.next(now, unlimited).unwrap();
        sched.complete(d.endpoint, d.probe, failed, now);
    }
    sched.offer(held, 10, now).unwrap();
    let d = sched.next(now, unlimited).unwrap();
    let busy = Feedback::Retryable { took: MS, overloaded: true, retry_after: Some(Duration::from_secs(600)) };
    sched.complete(d.endpoint, d.probe, busy, now);
    for (endpoint, message) in [(paused, 20), (held, 21)] {
        sched.offer(endpoint, message, now).unwrap();
    }
    let later = now + Duration::from_secs(1);
    assert!(sched.next(later, unlimited).is_none(), "both wait");
    let state = |sched: &Scheduler<u32>, id| sched.snapshot(later).into_iter().find(|s| s.endpoint == id).unwrap();
    assert_eq!(state(&sched, paused).state, EndpointState::Paused);
    assert_eq!(state(&sched, held).state, EndpointState::Paused);

    assert!(sched.resume(paused));
    let d = sched.next(later, unlimited).expect("the paused endpoint's message goes at once");
    assert_eq!((d.endpoint, d.message, d.probe), (paused, 20, false));
    assert!(sched.next(later, unlimited).is_none(), "the held endpoint still waits");
    assert!(sched.resume(held));
    let d = sched.next(later, unlimited).expect("and so does the held one's");
    assert_eq!((d.endpoint, d.message), (held, 21));
    assert_ne!(state(&sched, paused).state, EndpointState::Paused);
    assert_eq!(state(&sched, paused).paused_for, None);

    // The failures were forgotten: it takes five new ones to pause it again.
    for i in 30..34 {
        sched.complete(paused, false, failed, later);
        sched.offer(paused, i, later).unwrap();
        assert!(sched.next(later, unlimited).is_some(), "failure {} after the resume does not pause", i - 29);
    }
    assert!(!sched.resume(Uuid::now_v7()), "an endpoint this worker never saw");
}

#[test]
fn shutdown_takes_every_queued_message() {
    let mut sched: Scheduler<u32> = Scheduler::new(config(2, 256));
    let now = Instant::now();
    for i in 0..5 {
        sched.offer(Uuid::now_v7(), i, now).unwrap();
    }
    let _ = sched.next(now, unlimited);
    assert_eq!(sched.queued().count(), 4);
    assert_eq!(sched.take_queued().len(), 4);
    assert_eq!(sched.held(), 1, "the one in flight is still held");
}

#[test]
fn an_answered_delivery_frees_its_slot_at_once_and_its_message_until_it_has_settled() {
    let mut sched: Scheduler<u32> = Scheduler::new(config(1, 2));
    let now = Instant::now();
    let e = Uuid::now_v7();
    sched.offer(e, 0, now).unwrap();
    sched.offer(e, 1, now).unwrap();
    let d = sched.next(now, unlimited).unwrap();
    assert!(sched.next(now, unlimited).is_none(), "one slot");
    assert!(!sched.has_room());
    // The answer is in: the next one may go while the first is still being recorded...
    sched.complete(d.endpoint, d.probe, Feedback::Settled(MS), now);
    assert!(sched.next(now, unlimited).is_some(), "the slot is free again");
    // ...but the buffer still counts the first message until it has settled.
    assert_eq!(sched.held(), 2);
    assert!(!sched.has_room());
    sched.settled();
    assert_eq!(sched.held(), 1);
    assert!(sched.has_room());
}
