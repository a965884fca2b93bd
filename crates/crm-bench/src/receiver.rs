//! The benchmark's receiver: the external CRM, in the load generator's process, recording each webhook into the
//! [`Ledger`]. It can answer after a delay (a slow CRM) or refuse every other request with 503 (a flaky one).

use crate::ledger::Ledger;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Router;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util_like::Shutdown;

/// The path that never answers.
const HANG_PATH: &str = "/hang";

/// How the receiver answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    pub delay: Duration,
    /// Answer 503 to every other request (the first, third, …), without recording it as received.
    pub fail_every_other: bool,
}

#[derive(Clone)]
struct Ctx {
    ledger: Arc<Ledger>,
    behaviour: Behaviour,
    requests: Arc<AtomicU64>,
}

pub struct BenchReceiver {
    pub port: u16,
    pub requests: Arc<AtomicU64>,
    shutdown: Shutdown,
}

impl BenchReceiver {
    pub async fn start(ledger: Arc<Ledger>, behaviour: Behaviour) -> anyhow::Result<BenchReceiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(AtomicU64::new(0));
        let ctx = Ctx { ledger, behaviour, requests: requests.clone() };
        let app = Router::new().fallback(receive).with_state(ctx);
        let shutdown = Shutdown::default();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move { stop.wait().await }).await;
        });
        Ok(BenchReceiver { port, requests, shutdown })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// An endpoint of this receiver that never answers.
    pub fn hanging_url(&self) -> String {
        format!("http://127.0.0.1:{}{HANG_PATH}", self.port)
    }

    pub fn stop(&self) {
        self.shutdown.trigger();
    }
}

async fn receive(State(ctx): State<Ctx>, uri: axum::http::Uri, body: Bytes) -> StatusCode {
    let n = ctx.requests.fetch_add(1, Ordering::Relaxed);
    if uri.path() == HANG_PATH {
        // An endpoint that never answers: the worker's timeout ends the request.
        std::future::pending::<()>().await;
    }
    if !ctx.behaviour.delay.is_zero() {
        tokio::time::sleep(ctx.behaviour.delay).await;
    }
    if ctx.behaviour.fail_every_other && n % 2 == 0 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let at = Instant::now();
    if let Some(key) = key_of(&body) {
        ctx.ledger.receive(key, at);
    }
    StatusCode::NO_CONTENT
}

/// (row id, row version) of a webhook body.
fn key_of(body: &[u8]) -> Option<crate::ledger::Key> {
    #[derive(serde::Deserialize)]
    struct Payload {
        data: Data,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        row: Option<Row>,
    }
    #[derive(serde::Deserialize)]
    struct Row {
        id: uuid::Uuid,
        version: i64,
    }
    let payload: Payload = serde_json::from_slice(body).ok()?;
    let row = payload.data.row?;
    Some((row.id, row.version))
}

mod tokio_util_like {
    //! A one-shot, cloneable stop signal.
    use std::sync::Arc;
    use tokio::sync::watch;

    #[derive(Clone)]
    pub struct Shutdown {
        tx: Arc<watch::Sender<bool>>,
    }

    impl Default for Shutdown {
        fn default() -> Self {
            Shutdown { tx: Arc::new(watch::channel(false).0) }
        }
    }

    impl Shutdown {
        pub fn trigger(&self) {
            let _ = self.tx.send(true);
        }

        pub async fn wait(&self) {
            let mut rx = self.tx.subscribe();
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }
}
