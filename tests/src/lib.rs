//! The end-to-end test harness: the real crm-api (and workers) booted on port 0 against a test's own database and
//! stream, a typed API client, and helpers that read what reached the stream. The infrastructure underneath (test
//! databases, streams, private servers, the fake receiver) is `test-support`'s and is re-exported here, so a
//! test file needs only this crate.

pub mod api;
pub mod burst;
pub mod pipeline;
pub mod stream;

pub use api::{Api, Response};
pub use pipeline::{Pipeline, PipelineSpec, WorkerProcess};
pub use test_support::*;

use crm_api::{ApiConfig, Application};
use service_common::Env;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A running crm-api.
pub struct ApiProcess {
    pub api: Api,
    pub shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ApiProcess {
    pub async fn start(env: HashMap<String, String>) -> ApiProcess {
        let config = ApiConfig::from_env(&Env::from_map(env)).expect("valid test config");
        let app = Application::build(config).await.expect("crm-api builds");
        let api = Api::new(format!("http://127.0.0.1:{}", app.port()));
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        ApiProcess { api, shutdown, handle: Some(handle) }
    }

    /// Graceful stop: returns once the server and relay have finished.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("crm-api task").expect("crm-api stops cleanly");
        }
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// One test's world: a database, a stream, and crm-api.
pub struct TestApp {
    pub api: Api,
    pub process: ApiProcess,
    pub pool: PgPool,
    pub stream: TestStream,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with the environment adjusted by `f`.
    pub async fn spawn_with(f: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        init_logging();
        let db = TestDb::create().await;
        let stream = TestStream::new(&shared_nats_url());
        let mut env = base_env(&db, &stream);
        f(&mut env);
        let process = ApiProcess::start(env).await;
        let pool = db.pool().await;
        TestApp { api: process.api.clone(), process, pool, stream, db }
    }

    /// A workspace and a token of `role` for it.
    pub async fn workspace_with_token(&self, role: &str) -> (Uuid, String) {
        let ws = self.api.create_workspace("Acme").await;
        let token = self.api.create_token(ws, role).await;
        (ws, token)
    }

    pub async fn outbox_len(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&self.pool).await.expect("count outbox")
    }

    /// Waits until the relay has drained the outbox.
    pub async fn wait_outbox_drained(&self) {
        eventually(Duration::from_secs(20), || async { self.outbox_len().await == 0 }).await;
    }
}

/// The value of the Prometheus sample `name` (with its labels, e.g. `webhook_held_back_total{reason="leased"}`)
/// in a metrics text; 0 when absent.
pub fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
