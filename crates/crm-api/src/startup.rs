//! Building and running crm-api: `Application::build(config)` binds its listener (port 0 works) and connects;
//! `run_until_stopped(shutdown)` serves the API and runs the relay, the recovery task and housekeeping until the
//! token is cancelled.

use crate::config::ApiConfig;
use crate::metrics::ApiMetrics;
use crate::recovery::Recoverer;
use crate::relay::{Handed, Handoff, Relay};
use crate::routes;
use crate::service::writer::Writer;
use crate::state::{AppState, AppStateInner};
use anyhow::Context as _;
use axum::{middleware, Router};
use secrecy::ExposeSecret;
use service_common::db::Heard;
use service_common::{db, health, metrics::track_http, nats};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub struct Application {
    listener: TcpListener,
    port: u16,
    router: Router,
    relay: Relay,
    handed: Handed,
    state: AppState,
    stream_config: async_nats::jetstream::stream::Config,
    js: async_nats::jetstream::Context,
    header_read_timeout: Duration,
    delivery_retention: Duration,
    recoverer: Recoverer,
}

impl Application {
    pub async fn build(config: ApiConfig) -> anyhow::Result<Self> {
        let pool = db::connect(&config.common.database_url, config.db_max_connections, "crm-api")
            .await
            .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
        if config.migrate_on_start {
            crm_db::migrate(&pool).await.context("applying migrations")?;
        }
        let client = nats::connect(&config.common.nats_url, "crm-api").await.context("NATS_URL")?;
        let js = nats::jetstream(client.clone());
        let metrics = ApiMetrics::new();
        let (handoff, handed) = Handoff::new();
        let subjects = config.common.subjects();
        // The writers' batched key lookups and writes go through a pool of their own (one connection per writer,
        // kept by its writer). Their plans are cached: the one lookup whose plan depends on statistics (leads by
        // email) is planned again at each `ANALYZE crm_rows`, which the statistics task runs while the table grows.
        let writer_pool = db::connect_key_lookups(
            &config.common.database_url,
            config.writers as u32,
            "crm-api-writer",
            db::Commit::Durable,
        )
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
        let writer = Writer::spawn(writer_pool, subjects.clone(), handoff, config.writers, metrics.writer.clone());
        let state = AppState::new(AppStateInner {
            pool: pool.clone(),
            keyring: config.common.secret_keys.clone(),
            egress: config.common.egress.clone(),
            subjects,
            admin_token_hash: config.admin_token.as_ref().map(|t| crate::auth::hash_token(t.expose_secret())),
            metrics: metrics.clone(),
            tokens: crate::auth::TokenCache::default(),
            body_read_timeout: config.body_read_timeout,
            writer,
            recovery_wake: Arc::new(Notify::new()),
        });
        let readiness = health::Readiness { pool: pool.clone(), nats: client, metrics: metrics.registry.clone() };
        let router = Router::new()
            .merge(routes::router(state.clone(), config.max_in_flight, config.request_timeout))
            .merge(health::router(readiness))
            .merge(crate::console::router())
            .method_not_allowed_fallback(|| async { routes::MethodNotAllowed })
            .layer(axum::extract::DefaultBodyLimit::max(crate::extract::MAX_BODY_BYTES))
            .layer(middleware::from_fn_with_state(metrics.http.clone(), track_http));
        // The relay's statements with parameters reach outbox rows through their primary key (the table has no
        // other index) and deliveries by id; its once-a-second counts have no parameters.
        let relay_pool = db::connect_key_lookups(&config.common.database_url, 4, "crm-api-relay", db::Commit::Async)
            .await
            .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
        let recoverer = Recoverer::new(pool.clone(), state.subjects.clone(), config.recovery, metrics.clone());
        let relay = Relay::new(relay_pool, js.clone(), metrics, config.relay.batch_size, config.relay.poll_interval);
        let listener =
            TcpListener::bind(config.addr).await.with_context(|| format!("binding CRM_API_ADDR {}", config.addr))?;
        let port = listener.local_addr()?.port();
        let stream_config = nats::stream_config(&config.common.stream, &state.subjects, config.common.stream_replicas);
        let header_read_timeout = config.header_read_timeout;
        let delivery_retention = config.delivery_retention;
        Ok(Application {
            listener,
            port,
            router,
            relay,
            handed,
            state,
            stream_config,
            js,
            header_read_timeout,
            delivery_retention,
            recoverer,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown`; then stops accepting, finishes requests in flight, lets the relay publish what
    /// they committed and finish its pass, and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port, "crm-api listening");
        // The relay stops only once the last request has been answered, so it publishes every event committed.
        let relay_stop = CancellationToken::new();
        let relay_task =
            tokio::spawn(run_relay(self.js, self.stream_config, self.relay, self.handed, relay_stop.clone()));
        let housekeeping = tokio::spawn(housekeeping(self.state.clone(), self.delivery_retention, shutdown.clone()));
        let revocations = tokio::spawn(follow_revocations(self.state.clone(), shutdown.clone()));
        let recoveries = tokio::spawn(self.recoverer.run(self.state.recovery_wake.clone(), shutdown.clone()));
        let statistics = tokio::spawn(crate::statistics::keep_current(self.state.pool.clone(), shutdown.clone()));
        service_common::serve::serve(self.listener, self.router, shutdown.clone(), self.header_read_timeout).await;
        shutdown.cancel();
        relay_stop.cancel();
        let _ = relay_task.await;
        let _ = housekeeping.await;
        let _ = revocations.await;
        let _ = recoveries.await;
        let _ = statistics.await;
        tracing::info!("crm-api stopped");
        Ok(())
    }
}

/// Creates or updates the stream (retrying while NATS is away), then relays.
async fn run_relay(
    js: async_nats::jetstream::Context,
    stream: async_nats::jetstream::stream::Config,
    relay: Relay,
    handed: Handed,
    shutdown: CancellationToken,
) {
    let mut backoff = service_common::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match nats::ensure_stream(&js, stream.clone()).await {
            Ok(_drift) => break,
            Err(e) => {
                tracing::warn!(error = %e, stream = %stream.name, "cannot create or update the stream yet");
                if !backoff.wait(&shutdown).await {
                    return;
                }
            }
        }
    }
    relay.run(handed, shutdown).await;
}

/// Periodic clean-up: idempotency keys older than a day, and ended deliveries older than the delivery retention.
/// The first round runs at start.
async fn housekeeping(state: AppState, delivery_retention: Duration, shutdown: CancellationToken) {
    let pool = &state.pool;
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = crate::repo::idempotency::expire(pool).await {
            tracing::debug!(error = %e, "idempotency key expiry failed; will retry");
        }
        // The first run after an upgrade may have a large backlog to work through: stop with the service rather
        // than finish it (every batch already deleted stays deleted).
        let pruning = crate::retention::prune_deliveries(pool, delivery_retention, crate::retention::PRUNE_BATCH);
        tokio::select! {
            pruned = pruning => match pruned {
                Ok(0) => {}
                Ok(n) => {
                    state.metrics.deliveries_pruned.inc_by(n);
                    tracing::info!(pruned = n, "ended deliveries past the retention pruned from the delivery log");
                }
                Err(e) => tracing::warn!(error = %e, "delivery log pruning failed; will retry"),
            },
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Drops revoked tokens from this replica's cache as other replicas announce them (`NOTIFY crm_tokens`), and every
/// cached token when announcements may have been missed.
async fn follow_revocations(state: AppState, shutdown: CancellationToken) {
    service_common::db::follow_channel(&state.pool, crm_db::Channel::Tokens.name(), &shutdown, |heard| match heard {
        Heard::Notification(payload) => state.tokens.heard_revocation(webhook_signing::hex::decode(payload).as_deref()),
        Heard::Gap => state.tokens.heard_revocation(None),
    })
    .await
}
