//! Building and running a worker: `Worker::build(config, options)` connects and binds the health listener (port 0
//! works); `run_until_stopped(shutdown)` consumes until the token is cancelled, drains, and returns.

use crate::config::WorkerConfig;
use crate::consumer::ConsumerLoop;
use crate::metrics::WorkerMetrics;
use crate::presence::Presence;
use crate::process::Ctx;
use crate::scheduler::SchedulerConfig;
use crate::sender::{NameLookup, Sender, SenderConfig, SystemLookup};
use crate::settings::SettingsCache;
use anyhow::Context as _;
use axum::{middleware, Router};
use service_common::{db, health, metrics::track_http, nats};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What a caller can set beyond the environment.
pub struct WorkerOptions {
    /// Where host names are resolved (the egress check applies to whatever it returns).
    pub lookup: Arc<dyn NameLookup>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions { lookup: Arc::new(SystemLookup) }
    }
}

pub struct Worker {
    listener: TcpListener,
    port: u16,
    router: Router,
    consumer: ConsumerLoop,
    settings: SettingsCache,
    ctx: Arc<Ctx>,
}

impl Worker {
    pub async fn build(config: WorkerConfig, options: WorkerOptions) -> anyhow::Result<Worker> {
        let pool = db::connect(&config.common.database_url, config.db_max_connections, "delivery-worker")
            .await
            .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
        // Attempt records and skips look deliveries up by primary key, many per statement; each has one batching
        // writer, so two connections serve them. Claims and lease releases, too, find deliveries by id alone; the
        // claims, too, are one batch at a time, so two connections serve them as well. Each batching task keeps
        // its connection between batches (`db::Held`). The worker's connections are thus
        // `WORKER_DB_MAX_CONNECTIONS` + 4 at most.
        let record_pool =
            db::connect_key_lookups(&config.common.database_url, 2, "delivery-worker-records", db::Commit::Durable)
                .await
                .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
        let fast_pool =
            db::connect_key_lookups(&config.common.database_url, 2, "delivery-worker-claims", db::Commit::Async)
                .await
                .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
        let client = nats::connect(&config.common.nats_url, "delivery-worker").await.context("NATS_URL")?;
        let js = nats::jetstream(client.clone());
        let metrics = WorkerMetrics::new();
        let sender = Sender::new(
            config.common.egress.clone(),
            SenderConfig { timeout: config.timeout, ..SenderConfig::default() },
            options.lookup,
        )
        .context("building the HTTP client")?;
        let settings = SettingsCache::new(pool.clone(), config.common.secret_keys.clone());
        let ctx = Arc::new(Ctx {
            pool: pool.clone(),
            fast_pool: fast_pool.clone(),
            recorder: crate::store::Recorder::spawn(record_pool.clone()),
            skipper: crate::store::Skipper::spawn(record_pool),
            claimer: crate::store::Claimer::spawn(fast_pool.clone(), config.timeout + Duration::from_secs(2)),
            settings: settings.clone(),
            sender,
            retry: config.retry,
            metrics: metrics.clone(),
            ack_wait: config.ack_wait,
            lease: config.timeout + Duration::from_secs(2),
            hard_stop: CancellationToken::new(),
        });
        let readiness = health::Readiness { pool: pool.clone(), nats: client, metrics: metrics.registry.clone() };
        let router = health::router(readiness).layer(middleware::from_fn_with_state(metrics.http.clone(), track_http));
        let listener =
            TcpListener::bind(config.addr).await.with_context(|| format!("binding WORKER_ADDR {}", config.addr))?;
        let port = listener.local_addr()?.port();
        let consumer = ConsumerLoop {
            ctx: ctx.clone(),
            js,
            stream: nats::stream_config(
                &config.common.stream,
                &config.common.subjects(),
                config.common.stream_replicas,
            ),
            scheduler: SchedulerConfig {
                concurrency: config.concurrency,
                buffer: config.buffer,
                pause_after_failures: config.pause_after_failures,
                first_pause: config.pause,
            },
            presence: Presence::new(pool.clone()),
            ack_wait: config.ack_wait,
            grace: config.shutdown_grace,
        };
        Ok(Worker { listener, port, router, consumer, settings, ctx })
    }

    /// The health and metrics port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port, "delivery-worker started");
        let background = CancellationToken::new();
        let follower = tokio::spawn(self.settings.clone().follow_changes(background.clone()));
        let sampler = tokio::spawn(sample_consumer(
            self.consumer.js.clone(),
            self.consumer.stream.name.clone(),
            self.ctx.clone(),
            background.clone(),
        ));
        let serve_until = background.clone().cancelled_owned();
        let server =
            tokio::spawn(
                async move { axum::serve(self.listener, self.router).with_graceful_shutdown(serve_until).await },
            );
        let (resume_to, resumes) = tokio::sync::mpsc::channel(crate::resume::QUEUE);
        let resumer = tokio::spawn(crate::resume::follow(self.ctx.pool.clone(), resume_to, background.clone()));
        self.consumer.run(resumes, shutdown).await;
        background.cancel();
        let _ = follower.await;
        let _ = resumer.await;
        let _ = sampler.await;
        server.await.context("health server task")?.context("health server")?;
        tracing::info!("delivery-worker stopped");
        Ok(())
    }
}

/// Samples the consumer's pending and ack-pending counts for the metrics.
async fn sample_consumer(js: async_nats::jetstream::Context, stream: String, ctx: Arc<Ctx>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            _ = stop.cancelled() => return,
        }
        let Ok(stream) = js.get_stream(&stream).await else { continue };
        let consumer: Result<async_nats::jetstream::consumer::PullConsumer, _> =
            stream.get_consumer(crm_events::CONSUMER_NAME).await;
        if let Ok(mut consumer) = consumer {
            if let Ok(info) = consumer.info().await {
                ctx.metrics.consumer_pending.set(info.num_pending as i64);
                ctx.metrics.consumer_ack_pending.set(info.num_ack_pending as i64);
            }
        }
    }
}
