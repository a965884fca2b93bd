//! Which delivery runs next: work-conserving, fair between workspaces, adaptive per endpoint.
//!
//! The worker pulls only what it can hold (a bounded local buffer) and queues each message under its endpoint (the
//! workspace's webhook). Free slots go round robin over the endpoints that have queued work and may send now:
//! one busy endpoint alone gets every free slot, two busy endpoints share them, and an endpoint may send only
//! while its in-flight count is below its own limit ([`Limiter`]: it grows while the endpoint answers quickly and
//! shrinks on timeouts, errors and slow answers), its breaker lets it ([`Breaker`]), and its optional rate allows
//! it ([`TokenBucket`]).
//!
//! Messages waiting here are kept alive with in-progress acks, never NAKed for capacity. An endpoint may hold as
//! many queued messages as it drains in [`HORIZON`] (at least [`MIN_QUEUE`]): a fast endpoint can fill the buffer,
//! a hanging or paused one holds a handful. What arrives beyond that is handed back with a delay that reflects
//! its backlog (how long the endpoint needs for what it already holds), so it neither churns through JetStream
//! nor blocks the other workspaces' messages behind it in the stream.
//!
//! Order: messages of one endpoint start in the order they were pulled, but run concurrently, and retries come
//! back later, so they can finish (and reach the receiver) in any order. Receivers order by `row.version`.
//!
//! The scheduler is plain data over a message type `M`, driven by the consumer loop ([`crate::consumer`]) with
//! explicit times, so its policy is tested without a broker.

mod breaker;
mod bucket;
mod limiter;

pub use breaker::{Admission, Breaker, MAX_PAUSE};
pub use bucket::TokenBucket;
pub use limiter::{Limiter, Signal};

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// An endpoint holds at most what it drains in this long.
pub const HORIZON: Duration = Duration::from_secs(5);
/// ...but at least this many messages.
pub const MIN_QUEUE: usize = 4;
/// A new endpoint's limit, before it has answered anything.
pub const INITIAL_LIMIT: usize = 4;
/// The drain rate assumed for an endpoint that has not answered yet: its limit over this.
const ASSUMED_LATENCY: Duration = Duration::from_millis(100);
/// Bounds of the delay a message handed back for backlog gets.
const MIN_BACKLOG_DELAY: Duration = Duration::from_millis(250);
const MAX_BACKLOG_DELAY: Duration = Duration::from_secs(300);
/// An endpoint with nothing queued, in flight or remembered is forgotten after this long.
const IDLE_FORGET: Duration = Duration::from_secs(600);

/// How the scheduler is set up.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// `WORKER_CONCURRENCY`: deliveries in flight in this process, and every endpoint's ceiling.
    pub concurrency: usize,
    /// `WORKER_BUFFER`: messages held in this process, in flight or queued.
    pub buffer: usize,
    pub pause_after_failures: u32,
    pub first_pause: Duration,
}

/// What the endpoint's settings say that the scheduler needs (the webhook's optional rate limit), when known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Not known (the settings are loading): the last known pacing holds; an endpoint never known sends one
    /// request at a time until the first one has loaded its settings.
    Unknown,
    Unlimited,
    PerSecond(f64),
}

/// An endpoint's state as the metrics and the console show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// Sending as fast as it answers.
    Healthy,
    /// Work is waiting because the endpoint is at its concurrency limit or its rate.
    Limited,
    /// The breaker (or a `Retry-After`) holds it.
    Paused,
}

impl EndpointState {
    pub const fn as_str(self) -> &'static str {
        match self {
            EndpointState::Healthy => "healthy",
            EndpointState::Limited => "limited",
            EndpointState::Paused => "paused",
        }
    }
}

struct Endpoint<M> {
    queue: VecDeque<M>,
    in_flight: usize,
    limiter: Limiter,
    breaker: Breaker,
    bucket: Option<TokenBucket>,
    /// A `Retry-After` hold: nothing is sent before this.
    hold_until: Option<Instant>,
    last_active: Instant,
    /// When the last request went out.
    last_sent: Option<Instant>,
    /// The pacing last known: kept while the settings are reloading (their cache entry expired or was
    /// invalidated), so a busy endpoint keeps its limit and its rate bucket meanwhile.
    pacing: Pacing,
}

impl<M> Endpoint<M> {
    fn new(config: &SchedulerConfig, now: Instant) -> Self {
        Endpoint {
            queue: VecDeque::new(),
            in_flight: 0,
            limiter: Limiter::new(INITIAL_LIMIT, config.concurrency),
            breaker: Breaker::new(config.pause_after_failures, config.first_pause),
            bucket: None,
            hold_until: None,
            last_active: now,
            last_sent: None,
            pacing: Pacing::Unknown,
        }
    }

    /// Deliveries per second this endpoint takes at most while it may send, as far as is known.
    fn send_rate(&self) -> f64 {
        let latency = self.limiter.latency().unwrap_or(ASSUMED_LATENCY).max(Duration::from_micros(100));
        let by_concurrency = self.limiter.limit() as f64 / latency.as_secs_f64();
        self.bucket.as_ref().map_or(by_concurrency, |b| by_concurrency.min(b.rate()))
    }

    /// Deliveries per second this endpoint takes now: none while it is paused or held.
    fn drain_rate(&self, now: Instant) -> f64 {
        if self.blocked_until(now).is_some() {
            return 0.0;
        }
        self.send_rate()
    }

    fn queue_cap(&self, buffer: usize, now: Instant) -> usize {
        ((self.drain_rate(now) * HORIZON.as_secs_f64()) as usize).clamp(MIN_QUEUE, buffer.max(MIN_QUEUE))
    }

    /// How long what the endpoint already holds takes to drain: the delay for a message it cannot hold. While it
    /// is paused or held, that is the rest of the pause plus the drain once it may send again (a 1 s
    /// `Retry-After` hands back for about a second, not for the longest delay).
    fn backlog_delay(&self, now: Instant) -> Duration {
        let rate = self.send_rate();
        let backlog = self.queue.len() + self.in_flight;
        let drain = if rate > 0.0 { Duration::from_secs_f64(backlog as f64 / rate) } else { MAX_BACKLOG_DELAY };
        let blocked = self.blocked_until(now).map_or(Duration::ZERO, |until| until - now);
        (blocked + drain).clamp(MIN_BACKLOG_DELAY, MAX_BACKLOG_DELAY)
    }

    /// Until when nothing may be sent, if that is so now.
    fn blocked_until(&self, now: Instant) -> Option<Instant> {
        let hold = self.hold_until.filter(|until| *until > now);
        let pause = match self.breaker.admits(now) {
            Admission::Paused(rest) => Some(now + rest),
            _ => None,
        };
        hold.max(pause)
    }
}

/// A delivery to start: its message, its endpoint, and whether it is the breaker's probe.
#[derive(Debug)]
pub struct Dispatch<M> {
    pub message: M,
    pub endpoint: Uuid,
    pub probe: bool,
}

/// What became of an attempt, as the scheduler learns from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Feedback {
    /// No request was made (skipped, already ended, held by another worker, handed back).
    NotSent,
    /// The endpoint answered in a way that needs no retry (2xx, or a terminal answer).
    Settled(Duration),
    /// A retryable answer or no answer: timeout, connection error, 5xx, 429. `retry_after` when it asked for one.
    Retryable { took: Duration, overloaded: bool, retry_after: Option<Duration> },
}

pub struct Scheduler<M> {
    config: SchedulerConfig,
    endpoints: HashMap<Uuid, Endpoint<M>>,
    /// Endpoints with queued messages, in round-robin order.
    ring: VecDeque<Uuid>,
    queued: usize,
    in_flight: usize,
    /// Deliveries whose answer is in (their slot is free again) that are still recording it and answering
    /// JetStream: their messages are still held.
    settling: usize,
    /// Queued messages an endpoint can no longer hold (its drain rate fell), to hand back with their delay.
    evicted: Vec<(M, Duration)>,
}

impl<M> Scheduler<M> {
    pub fn new(config: SchedulerConfig) -> Self {
        Scheduler {
            config,
            endpoints: HashMap::new(),
            ring: VecDeque::new(),
            queued: 0,
            in_flight: 0,
            settling: 0,
            evicted: Vec::new(),
        }
    }

    /// Queued messages to hand back (with their delay): those an endpoint held when it slowed down, beyond what
    /// it now drains in [`HORIZON`]. The newest go first; the oldest keep their turn.
    pub fn take_evicted(&mut self) -> Vec<(M, Duration)> {
        std::mem::take(&mut self.evicted)
    }

    /// Messages held: queued, in flight, and settling (answered, being recorded).
    pub fn held(&self) -> usize {
        self.queued + self.in_flight + self.settling
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether another message may be pulled.
    pub fn has_room(&self) -> bool {
        self.held() < self.config.buffer
    }

    /// Takes a pulled message for `endpoint`; `Err` hands it back with a delay when the endpoint already holds
    /// all it can (its backlog).
    pub fn offer(&mut self, endpoint: Uuid, message: M, now: Instant) -> Result<(), (M, Duration)> {
        let config = self.config;
        let e = self.endpoints.entry(endpoint).or_insert_with(|| Endpoint::new(&config, now));
        e.last_active = now;
        if e.queue.len() >= e.queue_cap(config.buffer, now) {
            return Err((message, e.backlog_delay(now)));
        }
        if e.queue.is_empty() {
            self.ring.push_back(endpoint);
        }
        e.queue.push_back(message);
        self.queued += 1;
        Ok(())
    }

    /// The next delivery to start, if a slot is free and some endpoint may send: round robin over the endpoints
    /// with queued work, skipping those at their limit, paused, or out of rate tokens. `pacing` tells what is known
    /// of an endpoint's settings.
    pub fn next(&mut self, now: Instant, pacing: impl Fn(Uuid) -> Pacing) -> Option<Dispatch<M>> {
        if self.in_flight >= self.config.concurrency {
            return None;
        }
        for _ in 0..self.ring.len() {
            let endpoint = self.ring.pop_front()?;
            let Some(e) = self.endpoints.get_mut(&endpoint) else { continue };
            let dispatch = Self::try_send(e, endpoint, now, pacing(endpoint));
            if !e.queue.is_empty() {
                self.ring.push_back(endpoint);
            }
            if let Some(dispatch) = dispatch {
                self.queued -= 1;
                self.in_flight += 1;
                return Some(dispatch);
            }
        }
        None
    }

    fn try_send(e: &mut Endpoint<M>, endpoint: Uuid, now: Instant, pacing: Pacing) -> Option<Dispatch<M>> {
        if e.queue.is_empty() || e.hold_until.is_some_and(|until| until > now) {
            return None;
        }
        if pacing != Pacing::Unknown {
            e.pacing = pacing;
        }
        let pacing = e.pacing;
        let limit = match pacing {
            Pacing::Unknown => 1,
            _ => e.limiter.limit(),
        };
        let probe = match e.breaker.admits(now) {
            Admission::Paused(_) => return None,
            Admission::Probe if e.in_flight > 0 => return None,
            Admission::Probe => true,
            Admission::Go => false,
        };
        if e.in_flight >= limit {
            return None;
        }
        match (pacing, &mut e.bucket) {
            (Pacing::PerSecond(rate), Some(bucket)) if bucket.rate() == rate => {}
            (Pacing::PerSecond(rate), bucket) => {
                // A request sent before the rate was known (its settings were loading) counts against it.
                let interval = Duration::from_secs_f64(1.0 / rate);
                let recent = e.last_sent.is_some_and(|at| now.duration_since(at) < interval);
                *bucket = Some(TokenBucket::new(rate, if recent { 0.0 } else { 1.0 }, now));
            }
            (_, bucket) => *bucket = None,
        }
        if let Some(bucket) = &mut e.bucket {
            if !bucket.try_take(now) {
                return None;
            }
        }
        let message = e.queue.pop_front()?;
        if probe {
            e.breaker.probe_started();
        }
        e.in_flight += 1;
        e.last_active = now;
        e.last_sent = Some(now);
        Some(Dispatch { message, endpoint, probe })
    }

    /// When something blocked now may become sendable (a pause or hold ending, a rate token arriving), if any
    /// endpoint with queued work is waiting for one.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        for endpoint in &self.ring {
            let Some(e) = self.endpoints.get(endpoint) else { continue };
            let at = match e.blocked_until(now) {
                Some(until) => Some(until),
                None => e.bucket.as_ref().map(|b| now + b.wait(now)).filter(|at| *at > now),
            };
            if let Some(at) = at {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        wake
    }

    /// A delivery of `endpoint` no longer needs its slot (its answer is in, or it sends nothing); `probe` as it
    /// was dispatched. Its message stays held until [`Scheduler::settled`].
    pub fn complete(&mut self, endpoint: Uuid, probe: bool, feedback: Feedback, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.settling += 1;
        let Some(e) = self.endpoints.get_mut(&endpoint) else { return };
        let in_flight = e.in_flight;
        e.in_flight = e.in_flight.saturating_sub(1);
        e.last_active = now;
        match feedback {
            Feedback::NotSent => {
                if probe {
                    e.breaker.probe_abandoned();
                }
            }
            Feedback::Settled(took) => {
                e.breaker.succeeded();
                e.limiter.on(Signal::Answered(took), in_flight, now);
            }
            Feedback::Retryable { took, overloaded, retry_after } => {
                e.limiter.on(
                    if overloaded { Signal::Overloaded(took) } else { Signal::Answered(took) },
                    in_flight,
                    now,
                );
                if e.breaker.failed(now) {
                    tracing::warn!(workspace_id = %endpoint, "endpoint paused after repeated failures");
                }
                if let Some(after) = retry_after {
                    let until = now + after.min(MAX_PAUSE);
                    e.hold_until = Some(e.hold_until.map_or(until, |h| h.max(until)));
                }
                let cap = e.queue_cap(self.config.buffer, now);
                while e.queue.len() > cap {
                    let Some(message) = e.queue.pop_back() else { break };
                    self.queued -= 1;
                    let delay = e.backlog_delay(now);
                    self.evicted.push((message, delay));
                }
                if e.queue.is_empty() {
                    self.ring.retain(|id| *id != endpoint);
                }
            }
        }
    }

    /// A delivery [completed](Scheduler::complete) earlier has answered JetStream: its message is no longer held.
    pub fn settled(&mut self) {
        self.settling = self.settling.saturating_sub(1);
    }

    /// An operator resumed `endpoint`: its breaker closes and any `Retry-After` hold ends, so what it has queued may
    /// go at once (the next [`Scheduler::next`]). Its limit keeps adapting as before. Returns whether this worker
    /// knew the endpoint.
    pub fn resume(&mut self, endpoint: Uuid) -> bool {
        let Some(e) = self.endpoints.get_mut(&endpoint) else { return false };
        e.breaker.resume();
        e.hold_until = None;
        true
    }

    /// Every queued message, for in-progress acks.
    pub fn queued(&self) -> impl Iterator<Item = &M> {
        self.endpoints.values().flat_map(|e| e.queue.iter())
    }

    /// Takes every queued message out (shutdown: they are handed back).
    pub fn take_queued(&mut self) -> Vec<M> {
        self.ring.clear();
        self.queued = 0;
        self.endpoints.values_mut().flat_map(|e| e.queue.drain(..)).collect()
    }

    /// Forgets endpoints idle for long with nothing worth remembering; returns them (for their metrics).
    pub fn forget_idle(&mut self, now: Instant) -> Vec<Uuid> {
        let idle: Vec<Uuid> = self
            .endpoints
            .iter()
            .filter(|(_, e)| {
                e.queue.is_empty()
                    && e.in_flight == 0
                    && e.breaker.is_closed()
                    && now.duration_since(e.last_active) > IDLE_FORGET
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &idle {
            self.endpoints.remove(id);
        }
        idle
    }

    /// Each endpoint's state, for the metrics and the console.
    pub fn snapshot(&self, now: Instant) -> Vec<EndpointSnapshot> {
        self.endpoints
            .iter()
            .map(|(id, e)| {
                let paused_until = e.blocked_until(now);
                // Limited: work waits for the endpoint's own limit or rate, not merely for a free slot of this
                // worker (busy with other endpoints) or for its settings to load.
                let own_limit = match e.pacing {
                    Pacing::Unknown => 1,
                    _ => e.limiter.limit(),
                };
                let at_rate = e.bucket.as_ref().is_some_and(|b| b.wait(now) > Duration::ZERO);
                let state = if paused_until.is_some() {
                    EndpointState::Paused
                } else if !e.queue.is_empty() && (e.in_flight >= own_limit || at_rate) {
                    EndpointState::Limited
                } else {
                    EndpointState::Healthy
                };
                EndpointSnapshot {
                    endpoint: *id,
                    limit: e.limiter.limit(),
                    in_flight: e.in_flight,
                    queued: e.queue.len(),
                    state,
                    paused_for: paused_until.map(|until| until - now),
                    limit_changed_ago: e.limiter.changed_at.map(|at| now.saturating_duration_since(at)),
                }
            })
            .collect()
    }
}

/// One endpoint's state at an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSnapshot {
    pub endpoint: Uuid,
    pub limit: usize,
    pub in_flight: usize,
    pub queued: usize,
    pub state: EndpointState,
    /// How much longer it is paused, while it is.
    pub paused_for: Option<Duration>,
    /// How long ago its limit last changed.
    pub limit_changed_ago: Option<Duration>,
}

#[cfg(test)]
mod tests;
