//! The whole pipeline in one test: crm-api, one or more delivery-workers, and the test receiver, on a test's own
//! database and stream.

use crate::receiver::Receiver;
use crate::{base_env, init_logging, shared_nats_url, Api, ApiProcess, TestDb, TestStream};
use delivery_worker::sender::NameLookup;
use delivery_worker::{Worker, WorkerConfig, WorkerOptions};
use serde_json::json;
use service_common::Env;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A running delivery-worker.
pub struct WorkerProcess {
    pub port: u16,
    pub shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl WorkerProcess {
    pub async fn start(env: HashMap<String, String>, options: WorkerOptions) -> WorkerProcess {
        let config = WorkerConfig::from_env(&Env::from_map(env)).expect("valid worker config");
        let worker = Worker::build(config, options).await.expect("worker builds");
        let port = worker.port();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(worker.run_until_stopped(shutdown.clone()));
        WorkerProcess { port, shutdown, handle: Some(handle) }
    }

    /// SIGTERM: drain and stop; returns the worker's result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(handle) => handle.await.expect("worker task"),
            None => Ok(()),
        }
    }

    /// An abrupt stop: the worker's tasks are dropped mid-flight, nothing is acknowledged or handed back.
    pub async fn kill(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
            let _ = handle.await;
        }
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// The environment tests run the pipeline with: http to 127.0.0.1 allowed (the receiver), fast retries.
pub fn pipeline_env(db: &TestDb, stream: &TestStream) -> HashMap<String, String> {
    let mut env = base_env(db, stream);
    for (k, v) in [
        ("CRM_EGRESS_ALLOW_HTTP", "true"),
        ("CRM_EGRESS_ALLOW_CIDRS", "127.0.0.0/8"),
        ("WORKER_ADDR", "127.0.0.1:0"),
        ("CRM_WEBHOOK_TIMEOUT_MS", "1500"),
        ("CRM_WEBHOOK_RETRY_BASE_MS", "100"),
        ("CRM_WEBHOOK_RETRY_MAX_MS", "3000"),
        ("CRM_WEBHOOK_MAX_ATTEMPTS", "5"),
        ("WORKER_ACK_WAIT_MS", "3000"),
        ("WORKER_SHUTDOWN_GRACE_MS", "5000"),
        ("CRM_RELAY_POLL_MS", "100"),
    ] {
        env.insert(k.to_owned(), v.to_owned());
    }
    env
}

pub struct Pipeline {
    pub api: Api,
    pub api_process: ApiProcess,
    pub workers: Vec<WorkerProcess>,
    pub receiver: Receiver,
    pub pool: PgPool,
    pub env: HashMap<String, String>,
    pub stream: TestStream,
    pub db: TestDb,
}

/// How to build a pipeline.
pub struct PipelineSpec {
    pub workers: usize,
    pub env: Vec<(&'static str, String)>,
    pub lookup: Option<Arc<dyn NameLookup>>,
}

impl Default for PipelineSpec {
    fn default() -> Self {
        PipelineSpec { workers: 1, env: Vec::new(), lookup: None }
    }
}

impl PipelineSpec {
    /// One worker sending one request at a time, whose breaker pauses an endpoint for a minute after three
    /// retryable failures in a row, with attempts to spare: the count of requests before a pause is exact.
    pub fn pausing_after_three_failures() -> Self {
        PipelineSpec {
            env: vec![
                ("WORKER_CONCURRENCY", "1".into()),
                ("CRM_ENDPOINT_PAUSE_AFTER", "3".into()),
                ("CRM_ENDPOINT_PAUSE_MS", "60000".into()),
                ("CRM_WEBHOOK_MAX_ATTEMPTS", "20".into()),
            ],
            ..Default::default()
        }
    }
}

impl Pipeline {
    pub async fn spawn() -> Pipeline {
        Self::spawn_with(PipelineSpec::default()).await
    }

    pub async fn spawn_with(spec: PipelineSpec) -> Pipeline {
        init_logging();
        let db = TestDb::create().await;
        let stream = TestStream::new(&shared_nats_url());
        let mut env = pipeline_env(&db, &stream);
        for (k, v) in spec.env {
            env.insert(k.to_owned(), v);
        }
        let api_process = ApiProcess::start(env.clone()).await;
        let mut workers = Vec::new();
        for _ in 0..spec.workers {
            workers.push(Self::worker_with(&env, spec.lookup.clone()).await);
        }
        let pool = db.pool().await;
        Pipeline {
            api: api_process.api.clone(),
            api_process,
            workers,
            receiver: Receiver::start().await,
            pool,
            env,
            stream,
            db,
        }
    }

    async fn worker_with(env: &HashMap<String, String>, lookup: Option<Arc<dyn NameLookup>>) -> WorkerProcess {
        let options = match lookup {
            Some(lookup) => WorkerOptions { lookup },
            None => WorkerOptions::default(),
        };
        WorkerProcess::start(env.clone(), options).await
    }

    /// Starts one more worker on the same consumer.
    pub async fn add_worker(&mut self) {
        let worker = Self::worker_with(&self.env, None).await;
        self.workers.push(worker);
    }

    /// A workspace, an admin token, and its webhook pointed at `url` with `secret`, subscribed to both events.
    pub async fn workspace(&self, url: &str, secret: &str) -> (Uuid, String) {
        let ws = self.api.create_workspace("Acme").await;
        let token = self.api.create_token(ws, "admin").await;
        self.api
            .put(
                &format!("/v1/workspaces/{ws}/settings/crm-webhook"),
                Some(&token),
                &json!({"enabled": true, "url": url, "events": ["crm_row.created", "crm_row.updated"], "secret": secret}),
            )
            .await
            .expect(200);
        (ws, token)
    }

    /// The delivery as the API shows it.
    pub async fn delivery(&self, ws: Uuid, token: &str, id: &str) -> serde_json::Value {
        self.api.get(&format!("/v1/workspaces/{ws}/crm-webhook/deliveries/{id}"), Some(token)).await.expect(200).json()
    }

    /// Waits until the delivery's status is `status`, then returns it.
    pub async fn wait_status(
        &self,
        ws: Uuid,
        token: &str,
        id: &str,
        status: &str,
        timeout: Duration,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let response = self.api.get(&format!("/v1/workspaces/{ws}/crm-webhook/deliveries/{id}"), Some(token)).await;
            if response.status == 200 {
                let delivery = response.json();
                if delivery["status"] == status {
                    return delivery;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "delivery {id} is {} not {status}: {delivery}",
                    delivery["status"]
                );
            } else {
                assert!(tokio::time::Instant::now() < deadline, "delivery {id} not found");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
