//! The outbox relay: moves committed events from PostgreSQL to the JetStream stream.
//!
//! One relay runs in every crm-api replica, with two ways in:
//!
//! - **Directly.** This process's writers hand it every batch they commit, bodies and all ([`Handoff`]). It
//!   publishes them at once (`Nats-Msg-Id` = the event id), awaits every acknowledgement, and then deletes their
//!   outbox rows (`DELETE … WHERE seq = ANY`), many batches' rows in one statement: [`DELETE_EVERY`] after the
//!   first of them was published, or as soon as at least `CRM_RELAY_BATCH` rows wait, and always before a pass and
//!   at a stop. Nothing is read back from the database, and the publish does not wait for another round trip. If
//!   the publish fails, or the process dies before the delete, the rows stay and a pass (below) publishes them
//!   again once [`DIRECT_GRACE`] is over: the stream's duplicate window stores each id once. The backlog (the
//!   `crm_outbox_backlog` gauge, and the pacing of bulk recoveries) leaves out rows a writer committed less than
//!   [`BACKLOG_AFTER`] ago, which are most likely published and waiting for their delete.
//! - **By passes.** Each pass takes a batch in one statement (`DELETE … RETURNING` of the oldest rows, `FOR UPDATE
//!   SKIP LOCKED`, so replicas take disjoint batches), publishes every event, awaits every acknowledgement, and
//!   commits: the commit is what marks the batch sent. A relay that dies anywhere before the commit leaves the
//!   batch in the table, and whoever takes it next republishes. A failed pass (NATS or PostgreSQL away) rolls back
//!   and is retried with a growing pause, so nothing is lost while either is down. Passes run on the `crm_outbox`
//!   notification that the rare other writers of the outbox send (a test event, a redelivery, a re-driven parked
//!   event), after a direct publish failed or the handoff was full, and every `CRM_RELAY_POLL_MS` as a fallback:
//!   the poll is what publishes another replica's events if that replica stopped before its own relay did.
//!
//! An event the stream server cannot take (larger than its `max_payload`, read from the connection's server info
//! on every publish) would fail every pass and block every event behind it. Such an event is parked instead
//! (`outbox_parked`, with the reason, in a pass's transaction), counted, and left for an operator to inspect and
//! re-drive (`/admin/outbox/parked`); the batch goes on without it. The API's row caps keep events far below the
//! default 1 MiB limit, so this only happens on a server configured with a small one.

use crate::metrics::ApiMetrics;
use crate::repo::outbox::{self, Pending};
use async_nats::jetstream::{self, message::PublishMessage};
use futures::future::try_join_all;
use service_common::backoff::Backoff;
use service_common::db::Held;
use sqlx::PgPool;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox query failed")]
    Database(#[from] sqlx::Error),
    #[error("publish to the stream failed")]
    Publish(#[source] async_nats::Error),
}

/// Room left in a message for its headers (`Nats-Msg-Id`, trace context) and the protocol line around them, when
/// the payload's size is compared with the server's `max_payload`.
pub const HEADER_ALLOWANCE: usize = 4 * 1024;

/// What one pass published.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    pub published: usize,
    pub duplicates: usize,
    /// Events set aside because the stream server cannot take them.
    pub parked: usize,
}

/// Batches of committed events the direct path holds at most; more wait in the outbox for a pass.
const HANDOFF_BATCHES: usize = 1024;

/// How long after their commit the events handed to the direct path are its own: passes (of any replica) leave
/// them alone until then, so they are not published twice. Events the direct path could not publish wait this
/// long for a pass.
pub const DIRECT_GRACE: Duration = Duration::from_secs(5);

/// How long the direct path gathers the outbox rows of what it published before deleting them in one statement.
/// Far below [`DIRECT_GRACE`], so a pass rarely takes a row that is waiting to be deleted (only when its publish
/// began close to the grace's end, or its acknowledgement was slow; the stream then stores the second copy once).
/// One delete per published batch cost a statement, a round trip and two wake-ups every few events at moderate
/// rates.
pub const DELETE_EVERY: Duration = Duration::from_millis(50);

/// How old a row a writer committed (one without a body of its own) must be before it counts as backlog: a younger
/// one is most likely published already and waits for its delete (at most [`DELETE_EVERY`] after its publish).
pub const BACKLOG_AFTER: Duration = Duration::from_millis(2 * DELETE_EVERY.as_millis() as u64);

/// How this process's writers hand the relay what they committed. Cheap to clone; never waits.
#[derive(Clone)]
pub struct Handoff {
    batches: mpsc::Sender<Vec<Pending>>,
    /// Wakes a pass when a batch could not be handed over (the relay is behind): its rows are in the outbox.
    missed: Arc<Notify>,
}

/// The relay's end of a [`Handoff`].
pub struct Handed {
    batches: mpsc::Receiver<Vec<Pending>>,
    missed: Arc<Notify>,
}

impl Handoff {
    pub fn new() -> (Handoff, Handed) {
        let (batches, incoming) = mpsc::channel(HANDOFF_BATCHES);
        let missed = Arc::new(Notify::new());
        (Handoff { batches, missed: missed.clone() }, Handed { batches: incoming, missed })
    }

    /// Hands over the events of a committed batch. When the relay is behind (or gone), they stay in the outbox and
    /// a pass publishes them.
    pub fn hand(&self, events: Vec<Pending>) {
        if events.is_empty() {
            return;
        }
        if self.batches.try_send(events).is_err() {
            self.missed.notify_one();
        }
    }
}

/// What [`publish`] did with a batch: the stats, and the events it did not publish, with why.
pub struct Published<'a> {
    pub stats: PassStats,
    pub parked: Vec<(&'a Pending, String)>,
}

/// The largest event payload the connected server takes, leaving [`HEADER_ALLOWANCE`] for headers.
pub fn event_size_ceiling(js: &jetstream::Context) -> usize {
    js.client().server_info().max_payload.saturating_sub(HEADER_ALLOWANCE)
}

#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    /// The direct path's connection, kept between its deletes (see `Held`).
    direct: Arc<tokio::sync::Mutex<Held>>,
    js: jetstream::Context,
    metrics: ApiMetrics,
    batch_size: i64,
    poll_interval: Duration,
    delete_every: Duration,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        js: jetstream::Context,
        metrics: ApiMetrics,
        batch_size: i64,
        poll_interval: Duration,
    ) -> Self {
        let direct = Arc::new(tokio::sync::Mutex::new(Held::new(pool.clone())));
        Relay { pool, direct, js, metrics, batch_size, poll_interval, delete_every: DELETE_EVERY }
    }

    /// This relay, gathering the direct path's deletes for `every` instead of [`DELETE_EVERY`].
    pub fn deleting_every(mut self, every: Duration) -> Self {
        self.delete_every = every;
        self
    }

    /// Runs until `shutdown`; the publish or pass in progress completes first, so a graceful stop leaves nothing
    /// half done. `handed` is what this process's writers committed.
    pub async fn run(self, handed: Handed, shutdown: CancellationToken) {
        let Handed { batches: mut handed, missed } = handed;
        // Every notification, and every (re)connection of the listener (which may have missed some), asks for a pass.
        let wake = Arc::new(Notify::new());
        let listener = {
            let (pool, wake, shutdown) = (self.pool.clone(), wake.clone(), shutdown.clone());
            tokio::spawn(async move {
                service_common::db::follow_channel(&pool, crm_db::Channel::Outbox.name(), &shutdown, |_| {
                    wake.notify_one()
                })
                .await
            })
        };
        let mut backoff = Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
        let mut last_backlog_sample = Instant::now() - Duration::from_secs(60);
        // A steady clock, not a sleep begun afresh on every turn: a busy direct path must not keep the poll away.
        let mut poll = tokio::time::interval(self.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Outbox rows of published events, waiting to be deleted together; `flush` fires `delete_every` after the
        // first of them.
        let mut sent = Vec::new();
        let flush = tokio::time::sleep(self.delete_every);
        tokio::pin!(flush);
        // Pass until the outbox is drained, at start and whenever asked.
        let mut pass_due = true;
        while !shutdown.is_cancelled() {
            if pass_due {
                // A pass sees only rows not yet published (a failed delete leaves them to the passes anyway).
                self.delete_sent(&mut sent).await;
                match self.pass().await {
                    Ok(stats) => {
                        backoff.reset();
                        pass_due = (stats.published + stats.parked) as i64 == self.batch_size;
                    }
                    Err(e) => {
                        self.metrics.outbox_publish_errors.inc();
                        tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "outbox relay pass failed; retrying");
                        if !backoff.wait(&shutdown).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            if last_backlog_sample.elapsed() >= Duration::from_secs(1) {
                if let Ok(n) = outbox::backlog(&self.pool, BACKLOG_AFTER).await {
                    self.metrics.outbox_backlog.set(n);
                }
                if let Ok(n) = outbox::parked_count(&self.pool).await {
                    self.metrics.outbox_parked.set(n);
                }
                last_backlog_sample = Instant::now();
            }
            if pass_due {
                continue;
            }
            tokio::select! {
                Some(batch) = handed.recv() => {
                    let mut events = batch;
                    while events.len() < self.batch_size as usize {
                        match handed.try_recv() {
                            Ok(more) => events.extend(more),
                            Err(_) => break,
                        }
                    }
                    let first = sent.is_empty();
                    pass_due = !self.publish_direct(events, &mut sent).await;
                    if sent.len() >= self.batch_size as usize {
                        pass_due |= !self.delete_sent(&mut sent).await;
                    } else if first && !sent.is_empty() {
                        flush.as_mut().reset(tokio::time::Instant::now() + self.delete_every);
                    }
                }
                () = &mut flush, if !sent.is_empty() => pass_due |= !self.delete_sent(&mut sent).await,
                _ = wake.notified() => pass_due = true,
                _ = missed.notified() => pass_due = true,
                _ = poll.tick() => pass_due = true,
                _ = shutdown.cancelled() => break,
            }
        }
        // What the writers committed before the stop: published now rather than at the next start's pass.
        let mut events = Vec::new();
        while let Ok(more) = handed.try_recv() {
            events.extend(more);
        }
        if !events.is_empty() {
            self.publish_direct(events, &mut sent).await;
        }
        self.delete_sent(&mut sent).await;
        let _ = listener.await;
    }

    /// The direct path for one batch on its own: publishes events this process's writers committed, then deletes
    /// their outbox rows at once. Returns false when some are left for a pass (the publish or the delete failed, an
    /// event is too large for the server and must be parked by a pass, or events were handed over longer ago than
    /// [`DIRECT_GRACE`]).
    pub async fn publish_handed(&self, events: Vec<Pending>) -> bool {
        let mut sent = Vec::new();
        let published = self.publish_direct(events, &mut sent).await;
        self.delete_sent(&mut sent).await && published
    }

    /// Deletes the outbox rows of published events (`sent`, emptied). False if the delete failed: the rows stay,
    /// and a pass republishes them once [`DIRECT_GRACE`] is over (the stream's duplicate window stores them once).
    async fn delete_sent(&self, sent: &mut Vec<i64>) -> bool {
        if sent.is_empty() {
            return true;
        }
        let deleted = self.direct.lock().await.run(async |conn| outbox::delete_published(conn, sent).await).await;
        sent.clear();
        if let Err(e) = deleted {
            tracing::warn!(error = %e, "deleting published outbox rows failed; a pass republishes them");
            return false;
        }
        true
    }

    /// The direct path: publishes events this process's writers committed and adds the sequence numbers of those
    /// published to `sent`, whose outbox rows the caller deletes. Returns false when some are left for a pass (the
    /// publish failed, an event is too large for the server and must be parked by a pass, or events were handed
    /// over longer ago than [`DIRECT_GRACE`]).
    async fn publish_direct(&self, events: Vec<Pending>, sent: &mut Vec<i64>) -> bool {
        // Events handed over longer ago than the grace are a pass's now (one may have published them already, and
        // the stream's duplicate window may be over by the time a long outage ends): leave them to it.
        let now = chrono::Utc::now();
        let grace = chrono::Duration::from_std(DIRECT_GRACE).unwrap_or_default();
        let (events, stale): (Vec<Pending>, Vec<Pending>) =
            events.into_iter().partition(|p| now - p.created_at < grace);
        if events.is_empty() {
            return stale.is_empty();
        }
        let published = match publish(&self.js, &events).await {
            Ok(published) => published,
            Err(e) => {
                self.metrics.outbox_publish_errors.inc();
                tracing::warn!(error = %e, events = events.len(), "publishing committed events failed; a pass retries them");
                return false;
            }
        };
        let left: Vec<i64> = published.parked.iter().map(|(p, _)| p.seq).collect();
        sent.extend(events.iter().map(|p| p.seq).filter(|seq| !left.contains(seq)));
        self.count(&published.stats, &events);
        left.is_empty() && stale.is_empty()
    }

    fn count(&self, stats: &PassStats, events: &[Pending]) {
        self.metrics.outbox_published.inc_by(stats.published as u64);
        self.metrics.outbox_duplicates.inc_by(stats.duplicates as u64);
        let now = chrono::Utc::now();
        for p in events {
            let latency = (now - p.created_at).to_std().unwrap_or_default();
            self.metrics.outbox_publish_latency.observe(latency.as_secs_f64());
        }
    }

    /// One take-publish-commit transaction. Returns what it published. The relay's pool commits asynchronously:
    /// losing a commit in a PostgreSQL crash only republishes the batch, which the stream dedupes.
    pub async fn pass(&self) -> Result<PassStats, RelayError> {
        let mut tx = self.pool.begin().await?;
        let pending = outbox::take(&mut tx, self.batch_size, DIRECT_GRACE).await?;
        if pending.is_empty() {
            tx.commit().await?;
            return Ok(PassStats::default());
        }
        let Published { stats, parked } = publish(&self.js, &pending).await?;
        if !parked.is_empty() {
            outbox::park(&mut tx, &parked).await?;
        }
        tx.commit().await?;
        for (p, reason) in &parked {
            tracing::error!(seq = p.seq, event_id = %p.msg_id, %reason, "outbox event parked: it cannot be published");
        }
        self.metrics.outbox_parked_total.inc_by(parked.len() as u64);
        self.count(&stats, &pending);
        tracing::debug!(published = stats.published, duplicates = stats.duplicates, "outbox batch published");
        Ok(stats)
    }
}

/// Publishes a batch and awaits every acknowledgement. Sends first and awaits after, so the batch costs about one
/// round trip rather than one per event. An event larger than the server takes is not sent but returned to be
/// parked; any other failure fails the whole batch (NATS away: the pass is retried).
pub async fn publish<'a>(js: &jetstream::Context, pending: &'a [Pending]) -> Result<Published<'a>, RelayError> {
    let ceiling = event_size_ceiling(js);
    let mut acks = Vec::with_capacity(pending.len());
    let mut parked = Vec::new();
    for p in pending {
        if p.payload.len() > ceiling {
            parked.push((p, too_large(p.payload.len(), ceiling)));
            continue;
        }
        let mut headers = p.headers.0.clone();
        // A traced change gets a publish span in its trace, and the worker continues from that span.
        if headers.contains_key("traceparent") {
            let span = tracing::info_span!("outbox.publish", messaging.destination.name = %p.subject);
            service_common::trace::set_parent(&span, |k| p.headers.get(k).cloned());
            headers.extend(span.in_scope(service_common::trace::current_headers));
        }
        let mut message = PublishMessage::build().payload(p.payload.clone().into());
        for (name, value) in &headers {
            message = message.header(name.as_str(), value.as_str());
        }
        let message = message.message_id(p.msg_id.to_string());
        match js.send_publish(p.subject.clone(), message).await {
            Ok(ack) => acks.push(ack.into_future()),
            // The headers pushed it over after all: the client refused it before sending.
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                parked.push((p, too_large(p.payload.len(), ceiling)));
            }
            Err(e) => return Err(RelayError::Publish(e.into())),
        }
    }
    let acks = try_join_all(acks).await.map_err(|e| RelayError::Publish(e.into()))?;
    let stats = PassStats {
        published: acks.len(),
        duplicates: acks.iter().filter(|a| a.duplicate).count(),
        parked: parked.len(),
    };
    Ok(Published { stats, parked })
}

fn too_large(size: usize, ceiling: usize) -> String {
    format!(
        "event of {size} bytes is larger than the {ceiling} bytes the stream server takes \
         (its max_payload less {HEADER_ALLOWANCE} bytes for headers)"
    )
}
