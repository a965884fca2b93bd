//! The NATS connection and the stream definition (docs/contract.md §3, docs/jetstream.md).

use async_nats::jetstream::{self, consumer, stream};
use std::time::Duration;

/// Connects in the background: the returned client is usable at once and reconnects for ever, so a service starts
/// (and its API answers) while NATS is down, and heals when NATS comes back.
///
/// `urls` is `NATS_URL`: one server or several comma-separated seeds of a cluster. The client picks among the
/// seeds (and the servers the cluster advertises) when it connects and each time it reconnects.
pub async fn connect(urls: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let servers =
        seeds(urls).map_err(|e| async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, e))?;
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .connect(servers)
        .await
}

/// The server addresses of a comma-separated `NATS_URL` (async-nats parses one address per string).
pub fn seeds(urls: &str) -> Result<Vec<async_nats::ServerAddr>, std::io::Error> {
    urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::parse).collect()
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

/// A setting whose value on the server differs from the definition, found when a service starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub field: &'static str,
    pub found: String,
    pub wanted: String,
    /// Whether the definition's value was applied: `false` for a setting the server cannot change in place
    /// (the stream's retention and storage, the consumer's ack policy and deliver policy), which an operator must
    /// fix by recreating the stream or consumer.
    pub applied: bool,
}

impl Drift {
    fn check<T: std::fmt::Debug + PartialEq>(
        out: &mut Vec<Drift>,
        field: &'static str,
        found: &T,
        wanted: &T,
        mutable: bool,
    ) {
        if found != wanted {
            out.push(Drift { field, found: format!("{found:?}"), wanted: format!("{wanted:?}"), applied: mutable });
        }
    }
}

/// Logs what [`ensure_stream`] or [`ensure_consumer`] found: a warning per applied change, an error per setting
/// left as the server has it.
fn report(kind: &str, name: &str, drift: &[Drift]) {
    for d in drift {
        if d.applied {
            tracing::warn!(kind, name, field = d.field, found = %d.found, wanted = %d.wanted,
                "JetStream setting drifted from the definition; updated");
        } else {
            tracing::error!(kind, name, field = d.field, found = %d.found, wanted = %d.wanted,
                "JetStream setting differs from the definition and cannot be changed in place; \
                 recreate it to apply the definition (docs/jetstream.md)");
        }
    }
}

/// The stream settings that differ between the server (`found`) and the definition (`wanted`).
pub fn stream_drift(found: &stream::Config, wanted: &stream::Config) -> Vec<Drift> {
    let mut out = Vec::new();
    Drift::check(&mut out, "subjects", &found.subjects, &wanted.subjects, true);
    Drift::check(&mut out, "num_replicas", &found.num_replicas, &wanted.num_replicas, true);
    Drift::check(&mut out, "duplicate_window", &found.duplicate_window, &wanted.duplicate_window, true);
    Drift::check(&mut out, "discard", &found.discard, &wanted.discard, true);
    Drift::check(&mut out, "retention", &found.retention, &wanted.retention, false);
    Drift::check(&mut out, "storage", &found.storage, &wanted.storage, false);
    out
}

fn is_code(e: &jetstream::Error, code: jetstream::ErrorCode) -> bool {
    e.error_code() == code
}

/// Creates the stream, or brings an existing one to the definition: every replica of both services calls it at
/// start, so it is idempotent and safe to run concurrently. Settings that drifted are updated where the server
/// allows it and reported (logged, and returned) either way.
pub async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> Result<Vec<Drift>, async_nats::Error> {
    for _ in 0..3 {
        match js.get_stream(&config.name).await {
            Ok(existing) => {
                // `get_stream` has just fetched the stream's info.
                let info = existing.cached_info();
                let drift = stream_drift(&info.config, &config);
                if drift.iter().any(|d| d.applied) {
                    // Keep what cannot change as it is, so the update applies the rest.
                    let update = stream::Config {
                        retention: info.config.retention,
                        storage: info.config.storage,
                        ..config.clone()
                    };
                    js.update_stream(update).await?;
                }
                report("stream", &config.name, &drift);
                return Ok(drift);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(ref js_err)
                        if is_code(js_err, jetstream::ErrorCode::STREAM_NOT_FOUND)
                ) =>
            {
                match js.create_stream(config.clone()).await {
                    Ok(_) => return Ok(Vec::new()),
                    // Another replica created it in between (with other settings): compare again.
                    Err(e)
                        if matches!(
                            e.kind(),
                            jetstream::context::CreateStreamErrorKind::JetStream(ref js_err)
                                if is_code(js_err, jetstream::ErrorCode::STREAM_NAME_EXIST)
                        ) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(format!("stream {} kept changing while it was being created", config.name).into())
}

/// The consumer settings that differ between the server (`found`) and the definition (`wanted`).
pub fn consumer_drift(found: &consumer::Config, wanted: &consumer::pull::Config) -> Vec<Drift> {
    let mut out = Vec::new();
    Drift::check(&mut out, "ack_wait", &found.ack_wait, &wanted.ack_wait, true);
    Drift::check(&mut out, "max_deliver", &found.max_deliver, &wanted.max_deliver, true);
    Drift::check(&mut out, "max_ack_pending", &found.max_ack_pending, &wanted.max_ack_pending, true);
    Drift::check(&mut out, "description", &found.description, &wanted.description, true);
    Drift::check(&mut out, "ack_policy", &found.ack_policy, &wanted.ack_policy, false);
    Drift::check(&mut out, "deliver_policy", &found.deliver_policy, &wanted.deliver_policy, false);
    out
}

/// Creates the durable pull consumer, or brings an existing one to the definition (the settings the server can
/// change in place), and reports what drifted. Idempotent, and safe for every replica to run at once.
pub async fn ensure_consumer(
    stream: &jetstream::stream::Stream,
    config: consumer::pull::Config,
) -> Result<(consumer::PullConsumer, Vec<Drift>), async_nats::Error> {
    let name = config.durable_name.clone().ok_or("the consumer definition has no durable name")?;
    let drift = match stream.consumer_info(&name).await {
        Ok(info) => consumer_drift(&info.config, &config),
        Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let consumer = if drift.iter().all(|d| !d.applied) {
        // Create when missing; an existing one is used as it is (nothing it could change differs).
        stream.get_or_create_consumer(&name, config).await?
    } else {
        // The server applies the changes it allows to an existing durable consumer created again.
        stream.create_consumer(config).await?
    };
    report("consumer", &name, &drift);
    Ok((consumer, drift))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_separated_url_is_every_seed() {
        let servers = seeds("nats://a:4222, nats://b:4223,tls://c:4224").unwrap();
        let hosts: Vec<(String, u16)> = servers.iter().map(|s| (s.host().to_owned(), s.port())).collect();
        assert_eq!(hosts, [("a".into(), 4222), ("b".into(), 4223), ("c".into(), 4224)]);
        assert_eq!(seeds("nats://127.0.0.1:4222").unwrap().len(), 1);
        assert!(seeds("nats://a:4222,nats://b:notaport").is_err());
    }
}
