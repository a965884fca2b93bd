//! The test receiver: the external CRM, scripted. It records every request (time, headers, body) and answers from
//! a script of responses (status, headers, delay), then a default. Tests await counts rather than sleeping.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
    /// Raw bytes: a receiver may answer with anything, text or not.
    pub body: Bytes,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), delay: Duration::ZERO, body: Bytes::new() }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = Bytes::copy_from_slice(body.as_bytes());
        self
    }

    /// A body that need not be text (invalid UTF-8, NUL bytes...).
    pub fn raw_body(mut self, body: &[u8]) -> Reply {
        self.body = Bytes::copy_from_slice(body);
        self
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    pub fn webhook_id(&self) -> String {
        self.header("webhook-id").to_owned()
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    received: Vec<Received>,
    connections: usize,
    /// Requests being answered now, and the most at once.
    in_flight: usize,
    max_in_flight: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

impl Receiver {
    /// Starts on 127.0.0.1:0, answering 200 unless scripted otherwise.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let receiver = Receiver { port, inner: Arc::default(), changed: Arc::new(Notify::new()) };
        let app = Router::new().fallback(record).with_state(receiver.clone());
        let listener = CountingListener { inner: listener, receiver: receiver.clone() };
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Queues answers for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// The answer once the script is used up.
    pub fn default_reply(&self, reply: Reply) {
        self.lock().default = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    pub fn count(&self) -> usize {
        self.lock().received.len()
    }

    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// The most requests this receiver was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    /// Waits until at least `n` requests arrived; panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            {
                let inner = self.lock();
                if inner.received.len() >= n {
                    return inner.received.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("receiver got {} of {n} requests within {timeout:?}", self.count());
            }
        }
    }
}

async fn record(State(receiver): State<Receiver>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    let reply = {
        let mut inner = receiver.lock();
        inner.received.push(Received {
            at: Instant::now(),
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body,
        });
        inner.in_flight += 1;
        inner.max_in_flight = inner.max_in_flight.max(inner.in_flight);
        let scripted = inner.script.pop_front();
        scripted.or_else(|| inner.default.clone()).unwrap_or_else(|| Reply::status(200))
    };
    receiver.changed.notify_waiters();
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    receiver.lock().in_flight -= 1;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    // Text goes out as text/plain, anything else as application/octet-stream (axum's defaults for each).
    let mut response = match String::from_utf8(reply.body.to_vec()) {
        Ok(text) => (status, text).into_response(),
        Err(_) => (status, reply.body).into_response(),
    };
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::try_from(name), axum::http::HeaderValue::try_from(value))
        {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Counts accepted connections, so a test can prove none was made.
struct CountingListener {
    inner: tokio::net::TcpListener,
    receiver: Receiver,
}

impl axum::serve::Listener for CountingListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let accepted = axum::serve::Listener::accept(&mut self.inner).await;
        self.receiver.lock().connections += 1;
        accepted
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
