//! The consumer loop: one durable pull consumer shared by every replica, pulled in batches no larger than this
//! process's free slots (messages waiting in a client buffer have their ack-wait clock running), each message
//! handled on its own task.
//!
//! Shutdown: stop pulling; give in-flight deliveries the grace period; then abandon the rest, which hand their
//! messages back with an immediate NAK so another replica takes them at once. Messages already pulled but not
//! started are handed back the same way.

use crate::process::{self, Ctx};
use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use service_common::backoff::Backoff;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

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
    pub concurrency: usize,
    pub ack_wait: Duration,
    pub grace: Duration,
}

impl ConsumerLoop {
    pub async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
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
                while tasks.try_join_next().is_some() {}
                let permit = tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break 'connect,
                    },
                    _ = shutdown.cancelled() => {
                        hand_back_buffered(&mut messages).await;
                        break 'connect;
                    }
                };
                let next = tokio::select! {
                    next = messages.next() => next,
                    _ = shutdown.cancelled() => {
                        hand_back_buffered(&mut messages).await;
                        break 'connect;
                    }
                };
                match next {
                    Some(Ok(message)) => {
                        let ctx = self.ctx.clone();
                        tasks.spawn(async move {
                            process::handle(&ctx, message).await;
                            drop(permit);
                        });
                    }
                    Some(Err(e)) => {
                        // Missed heartbeats and pull errors are transient; the stream keeps going.
                        tracing::debug!(error = %e, "consumer stream error");
                        if matches!(e.kind(), consumer::pull::MessagesErrorKind::ConsumerDeleted) {
                            continue 'connect;
                        }
                    }
                    None => continue 'connect,
                }
            }
        }
        self.drain(tasks).await;
    }

    async fn open(&self) -> Result<consumer::pull::Stream, async_nats::Error> {
        service_common::nats::ensure_stream(&self.js, self.stream.clone()).await?;
        let stream = self.js.get_stream(&self.stream.name).await?;
        let consumer: consumer::PullConsumer =
            stream.get_or_create_consumer(crm_events::CONSUMER_NAME, consumer_config(self.ack_wait)).await?;
        let batch = self.concurrency.clamp(1, 256);
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

/// NAKs (immediately) messages already pulled into the client buffer but not started.
async fn hand_back_buffered(messages: &mut std::pin::Pin<&mut consumer::pull::Stream>) {
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(20), messages.next()).await {
        let _ = message.ack_with(AckKind::Nak(None)).await;
    }
}
