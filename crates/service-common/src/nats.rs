//! The NATS connection and the stream definition (docs/contract.md §3, docs/jetstream.md).

use async_nats::jetstream::{self, stream};
use std::time::Duration;

/// Connects in the background: the returned client is usable at once and reconnects for ever, so a service starts
/// (and its API answers) while NATS is down, and heals when NATS comes back.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
}

/// A JetStream context whose publish acks are bounded in time and in number in flight.
pub fn jetstream(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(4096)
        .backpressure_on_inflight(true)
        .build(client)
}

/// The stream configuration: one work-queue stream over every workspace's subject, on disk, with a duplicate
/// window so a republished event id is stored once.
pub fn stream_config(name: &str, subjects: &crm_events::Subjects, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        num_replicas: replicas,
        subjects: vec![subjects.all_row_changed()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}

/// Creates the stream, or updates it when its mutable settings drifted from [`stream_config`].
pub async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> Result<(), async_nats::Error> {
    match js.get_stream(&config.name).await {
        Ok(mut existing) => {
            let info = existing.info().await?;
            let current = &info.config;
            if current.subjects != config.subjects
                || current.duplicate_window != config.duplicate_window
                || current.discard != config.discard
                || current.num_replicas != config.num_replicas
            {
                js.update_stream(config).await?;
            }
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref js_err)
                    if js_err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            js.create_stream(config).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
