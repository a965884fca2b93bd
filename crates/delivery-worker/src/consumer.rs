//! The consumer loop: one durable pull consumer shared by every replica, pulled only while this process has room,
//! each message queued under its endpoint by the [`Scheduler`] and started when it may go.
//!
//! One task owns the scheduler and does everything in turn: pull while there is room, start what may start, learn
//! from what finished, keep waiting messages alive (an in-progress ack each, every third of the ack wait), hand
//! back what an endpoint cannot hold, say every few seconds what it sees ([`Presence`]). Each delivery runs on a
//! task of its own and reports back to it through its [`Hold`]: once when its answer is in (its slot is free for
//! the next delivery while it records the attempt and answers JetStream), and once when it has ended (its message
//! is no longer held).
//!
//! Shutdown: stop pulling; hand back at once every message that has not started, so another replica takes it;
//! give deliveries in flight the grace period; then abandon the rest, which hand their messages back with an
//! immediate NAK.

use crate::metrics::HoldBack;
use crate::presence::{Presence, BEAT};
use crate::process::{self, Ctx};
use crate::scheduler::{Feedback, Pacing, Scheduler, SchedulerConfig};
use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use service_common::backoff::Backoff;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The durable consumer's configuration. `max_deliver` is unlimited: attempts are counted in the delivery log,
/// which terms the message when they run out. `max_ack_pending` is large because messages waiting out a NAK
/// delay count as pending: a small limit would let one endpoint that is down for hours stall every workspace.
pub fn consumer_config(ack_wait: Duration) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(crm_events::CONSUMER_NAME.to_owned()),
        description: Some("delivery-worker: webhook deliveries".to_owned()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait,
        max_deliver: -1,
        max_ack_pending: 1_000_000,
        ..Default::default()
    }
}

pub struct ConsumerLoop {
    pub ctx: Arc<Ctx>,
    pub js: jetstream::Context,
    pub stream: async_nats::jetstream::stream::Config,
    pub scheduler: SchedulerConfig,
    pub presence: Presence,
    pub ack_wait: Duration,
    pub grace: Duration,
}

/// What a delivery task tells the consumer loop.
enum Report {
    /// It no longer needs its slot: its answer is in, or it sends nothing. What it learned of its endpoint.
    Released { endpoint: Uuid, probe: bool, feedback: Feedback },
    /// It has ended: its message is answered and no longer held.
    Ended,
}

/// A delivery's slot and its place in the buffer. [`Hold::release`] frees the slot with what the attempt taught;
/// dropping the hold (however the task ends) releases the slot if that has not happened, then ends the hold, in
/// that order.
pub struct Hold {
    reports: mpsc::UnboundedSender<Report>,
    endpoint: Uuid,
    probe: bool,
    released: bool,
}

impl Hold {
    /// Frees the slot for the next delivery (only the first call counts).
    pub fn release(&mut self, feedback: Feedback) {
        if !std::mem::replace(&mut self.released, true) {
            let _ = self.reports.send(Report::Released { endpoint: self.endpoint, probe: self.probe, feedback });
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release(Feedback::NotSent);
        let _ = self.reports.send(Report::Ended);
    }
}

impl ConsumerLoop {
    /// Runs until `shutdown`; `resumes` brings the endpoints operators resume ([`crate::resume`]).
    pub async fn run(self, mut resumes: mpsc::Receiver<Uuid>, shutdown: CancellationToken) {
        let mut sched: Scheduler<jetstream::Message> = Scheduler::new(self.scheduler);
        let mut tasks: JoinSet<()> = JoinSet::new();
        let (reports, mut reported) = mpsc::unbounded_channel::<Report>();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut keep_alive = tokio::time::interval(self.ack_wait / 3);
        let mut beat = tokio::time::interval(BEAT);
        'connect: while !shutdown.is_cancelled() {
            let messages = match self.open().await {
                Ok(messages) => {
                    backoff.reset();
                    messages
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot bind the consumer yet");
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            tokio::pin!(messages);
            loop {
                let now = Instant::now();
                while let Some(dispatch) = sched.next(now, |ws| self.pacing(ws)) {
                    let ctx = self.ctx.clone();
                    let hold = Hold {
                        reports: reports.clone(),
                        endpoint: dispatch.endpoint,
                        probe: dispatch.probe,
                        released: false,
                    };
                    tasks.spawn(async move { process::handle(&ctx, dispatch.message, hold).await });
                }
                self.ctx.metrics.buffered.set(sched.held() as i64);
                let wake = sched.next_wake(now).map(tokio::time::Instant::from_std);
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break 'connect,
                    Some(report) = reported.recv() => match report {
                        Report::Released { endpoint, probe, feedback } => {
                            sched.complete(endpoint, probe, feedback, Instant::now());
                            for (message, delay) in sched.take_evicted() {
                                self.hand_back(message, delay).await;
                            }
                        }
                        Report::Ended => sched.settled(),
                    },
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    next = messages.next(), if sched.has_room() => match next {
                        Some(Ok(message)) => self.offer(&mut sched, message).await,
                        Some(Err(e)) => {
                            // Missed heartbeats and pull errors are transient; the stream keeps going.
                            tracing::debug!(error = %e, "consumer stream error");
                            if matches!(e.kind(), consumer::pull::MessagesErrorKind::ConsumerDeleted) {
                                continue 'connect;
                            }
                        }
                        None => continue 'connect,
                    },
                    _ = keep_alive.tick() => {
                        for message in sched.queued() {
                            if let Err(e) = message.ack_with(AckKind::Progress).await {
                                tracing::debug!(error = %e, "in-progress ack of a queued message failed");
                            }
                        }
                    }
                    _ = beat.tick() => self.beat(&mut sched),
                    Some(endpoint) = resumes.recv() => {
                        if sched.resume(endpoint) {
                            tracing::info!(workspace_id = %endpoint, "endpoint resumed by an operator");
                        }
                    }
                    _ = sleep_until(wake), if wake.is_some() => {}
                }
            }
        }
        // Not started: straight back to JetStream, for another replica.
        for message in sched.take_queued() {
            self.ctx.metrics.hold_back(HoldBack::Shutdown);
            let _ = message.ack_with(AckKind::Nak(None)).await;
        }
        self.drain(tasks).await;
        if let Err(e) = self.presence.leave().await {
            tracing::debug!(error = %e, "could not take this worker's presence away; it ages out");
        }
    }

    /// Queues a pulled message under its endpoint, or hands it back when the endpoint holds all it can.
    async fn offer(&self, sched: &mut Scheduler<jetstream::Message>, message: jetstream::Message) {
        let endpoint = endpoint_of(&message);
        if let Err((message, delay)) = sched.offer(endpoint, message, Instant::now()) {
            self.hand_back(message, delay).await;
        }
    }

    /// Hands a message its endpoint cannot hold back to JetStream, to come back after `delay`.
    async fn hand_back(&self, message: jetstream::Message, delay: Duration) {
        self.ctx.metrics.hold_back(HoldBack::Backlog);
        if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::debug!(error = %e, "could not hand a message back; it returns after the ack wait");
        }
    }

    /// What the settings cache knows of an endpoint's rate cap, this worker's share of it.
    fn pacing(&self, endpoint: Uuid) -> Pacing {
        match self.ctx.settings.peek(endpoint) {
            None => Pacing::Unknown,
            Some(webhook) => match webhook.and_then(|w| w.max_per_second) {
                None => Pacing::Unlimited,
                Some(rate) => Pacing::PerSecond(rate / self.presence.live_workers() as f64),
            },
        }
    }

    /// Shows the endpoints in the metrics and to crm-api, and forgets those long idle.
    fn beat(&self, sched: &mut Scheduler<jetstream::Message>) {
        let now = Instant::now();
        let forgotten = sched.forget_idle(now);
        let snapshot = sched.snapshot(now);
        self.ctx.metrics.endpoints(&snapshot, &forgotten);
        let (presence, ctx) = (self.presence.clone(), self.ctx.clone());
        tokio::spawn(async move {
            match presence.beat(&snapshot).await {
                Ok(()) => {
                    ctx.metrics.workers_alive.set(presence.live_workers() as i64);
                }
                Err(e) => tracing::debug!(error = %e, "could not write this worker's presence; trying again"),
            }
        });
    }

    async fn open(&self) -> Result<consumer::pull::Stream, async_nats::Error> {
        service_common::nats::ensure_stream(&self.js, self.stream.clone()).await?;
        let stream = self.js.get_stream(&self.stream.name).await?;
        let (consumer, _drift) = service_common::nats::ensure_consumer(&stream, consumer_config(self.ack_wait)).await?;
        // The client prefetches at most this many beyond what the scheduler holds.
        let batch = self.scheduler.concurrency.clamp(1, 128);
        Ok(consumer.stream().max_messages_per_batch(batch).heartbeat(Duration::from_secs(5)).messages().await?)
    }

    /// Waits for in-flight deliveries up to the grace period, then abandons the rest (they NAK themselves).
    async fn drain(&self, mut tasks: JoinSet<()>) {
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, grace_ms = self.grace.as_millis() as u64, "draining deliveries in flight");
        }
        let all_done = async { while tasks.join_next().await.is_some() {} };
        tokio::pin!(all_done);
        tokio::select! {
            _ = &mut all_done => return,
            _ = tokio::time::sleep(self.grace) => {},
        }
        tracing::warn!("shutdown grace over; handing the remaining deliveries back");
        self.ctx.hard_stop.cancel();
        all_done.await;
    }
}

/// The endpoint (workspace) a message is for, from its subject `<prefix>.row.changed.<workspace_id>`; a subject
/// that does not end in one is queued under the nil id, and its delivery finds out what it is.
fn endpoint_of(message: &jetstream::Message) -> Uuid {
    message.subject.rsplit('.').next().and_then(|last| Uuid::parse_str(last).ok()).unwrap_or(Uuid::nil())
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
