//! The SSRF-safe HTTP client that sends one webhook request and reports what happened.
//!
//! Webhook URLs are chosen by tenants, and this service calls them from inside our network. Without care that is
//! a server-side request forgery hole: a URL (or a name that resolves, perhaps only later, to an address) pointing
//! at loopback, the private network or the cloud metadata endpoint would have us fetch it. So the [`EgressPolicy`]
//! is applied twice on every send:
//!
//! 1. [`EgressPolicy::check_url`] on the URL itself, before anything else. This is the only check that sees
//!    IP-literal hosts, which the connector connects to without asking a resolver.
//! 2. [`EgressPolicy::check_ip`] on every address the host name resolves to, inside the client's DNS resolver
//!    ([`resolver`]), right before connecting. This is what defeats DNS rebinding: the answer that is checked is the
//!    answer that is used. When nothing is left the send is [`SendOutcome::Blocked`] and no connection is made.
//!
//! Redirects are never followed (a 3xx is just an answer; following it would let a public endpoint bounce us to
//! an internal one) and proxies from the environment are ignored.
//!
//! The client is hyper-util's pooled HTTP/1.1 client with rustls (Mozilla's roots, from `webpki-roots`), with
//! nothing on top: a higher-level client (reqwest) turned each request's URL into a `Uri` and parsed it twice more
//! in its redirect layer, whatever the policy, which with its other layers cost the worker ≈ 11% of its
//! instructions per delivery. Here a URL is parsed once, when it is first checked, and its `Uri` kept with the
//! check. The whole exchange, body included, is bounded
//! by the configured timeout, and at most `max_response_bytes` of the answer are read, so a hostile endpoint can
//! neither hold a worker slot forever nor make it buffer an endless body.
//!
//! This module only reports; deciding what an outcome means (ack, NAK with a delay, term) is
//! [`retry`](crate::retry)'s job. Nothing here logs headers, bodies or URL paths and queries: they carry
//! signatures and, often, tokens.

mod resolver;

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use egress::{EgressPolicy, UrlRejection, WebhookUrl};
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use resolver::{EgressBlocked, NameLookup, StaticLookup, SystemLookup};

use resolver::EgressResolver;

/// The longest [`SendOutcome::Response::excerpt`], in bytes of UTF-8 (the delivery log keeps at most 1 KiB); also
/// how many bytes of the body are kept to make it.
pub const EXCERPT_BYTES: usize = 1024;

/// Longest [`SendOutcome::Network`] error text, in bytes; it ends up in the delivery log.
const MAX_ERROR_LEN: usize = 512;

/// How idle pooled connections are kept: long enough to reuse them between the deliveries of a busy endpoint.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle pooled connections kept per host.
const POOL_MAX_IDLE_PER_HOST: usize = 32;

/// Settings of the [`Sender`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// `CRM_WEBHOOK_TIMEOUT_MS`: bounds the whole request: connecting, sending, waiting for the answer and reading
    /// its body. Also used as the connect timeout.
    pub timeout: Duration,
    /// Read at most this many bytes of the response body, then stop reading and drop the connection (default
    /// 64 KiB). Only the first [`EXCERPT_BYTES`] are kept.
    pub max_response_bytes: usize,
    /// The `user-agent` header, `crm-webhook/<version>`; a `user-agent` in the request's headers wins.
    pub user_agent: String,
}

impl Default for SenderConfig {
    /// 10 s timeout (the documented default), 64 KiB read limit, `crm-webhook/<crate version>`.
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(10_000),
            max_response_bytes: 64 * 1024,
            user_agent: webhook_signing::USER_AGENT.to_owned(),
        }
    }
}

/// What one send attempt produced. Only facts; [`crate::retry::RetryPolicy::decide`] turns them into a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// The endpoint answered (any status, 3xx included: redirects are not followed).
    Response {
        /// The HTTP status code.
        status: u16,
        /// The delay the `Retry-After` header asks for, if present and valid (an HTTP-date relative to when the
        /// answer came; a date in the past is zero).
        retry_after: Option<Duration>,
        /// The start of the body, decoded lossily (NUL too becomes U+FFFD) and cut on a character boundary to at
        /// most [`EXCERPT_BYTES`] bytes of UTF-8.
        excerpt: String,
        /// From just before the request to the end of reading the body.
        duration: Duration,
    },
    /// The URL, or every address its name resolves to, is not allowed; no connection was made.
    Blocked {
        /// Starts with `egress: `; names the host and the refused addresses, never the path or query.
        reason: String,
        /// Time spent until the refusal.
        duration: Duration,
    },
    /// The request (connecting, waiting for the answer or reading the body) took longer than the timeout.
    Timeout {
        /// Time spent until giving up.
        duration: Duration,
    },
    /// Connection refused/reset, DNS failure, TLS failure, broken body...
    Network {
        /// One line with the error's source chain; never the URL's path or query.
        error: String,
        /// Time spent until the failure.
        duration: Duration,
    },
}

impl SendOutcome {
    /// How long the attempt took, whatever its outcome.
    pub fn duration(&self) -> Duration {
        match self {
            Self::Response { duration, .. }
            | Self::Blocked { duration, .. }
            | Self::Timeout { duration }
            | Self::Network { duration, .. } => *duration,
        }
    }
}

/// Parses a `Retry-After` value (RFC 9110 §10.2.3): delay-seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`), the
/// latter relative to `now` (a date in the past gives [`Duration::ZERO`]). Surrounding whitespace is ignored;
/// anything else (negative or fractional numbers, other date formats) gives `None`. A number too large for a `u64`
/// saturates; the retry policy caps delays anyway.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can make parsing fail.
        return Some(Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Sends webhook requests through the egress-checked client. Cheap to clone (one `Arc`); share one per process
/// so connections are pooled.
#[derive(Clone)]
pub struct Sender {
    inner: Arc<Inner>,
}

type Https = Client<HttpsConnector<HttpConnector<EgressResolver>>, Full<Bytes>>;

struct Inner {
    client: Https,
    user_agent: HeaderValue,
    policy: EgressPolicy,
    /// URLs that passed [`EgressPolicy::check_url`], by their text.
    checked: CheckedUrls,
    config: SenderConfig,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("policy", &self.inner.policy).field("config", &self.inner.config).finish()
    }
}

impl Sender {
    /// Builds the client: no redirects, no proxy, rustls with Mozilla's root certificates, `timeout` for the whole
    /// request and for connecting, pooled keep-alive connections, `TCP_NODELAY`, and a DNS resolver that applies
    /// `policy` to every resolved address (names are resolved by `lookup`).
    ///
    /// # Errors
    ///
    /// When `user_agent` is not a valid header value, or rustls has no protocol version to offer.
    pub fn new(policy: EgressPolicy, config: SenderConfig, lookup: Arc<dyn NameLookup>) -> Result<Sender, BuildError> {
        let tls = tls_config_builder()?.with_webpki_roots().with_no_client_auth();
        Sender::with_tls(policy, config, lookup, tls)
    }

    /// [`Sender::new`] with the TLS configuration given: for endpoints under a private certificate authority, and
    /// for tests, which trust a test authority of their own.
    ///
    /// # Errors
    ///
    /// When `user_agent` is not a valid header value.
    pub fn with_tls(
        policy: EgressPolicy,
        config: SenderConfig,
        lookup: Arc<dyn NameLookup>,
        tls: rustls::ClientConfig,
    ) -> Result<Sender, BuildError> {
        let user_agent = HeaderValue::from_str(&config.user_agent).map_err(|_| BuildError::UserAgent)?;
        let mut http = HttpConnector::new_with_resolver(EgressResolver::new(policy.clone(), lookup));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(Sender { inner: Arc::new(Inner { client, user_agent, policy, checked: CheckedUrls::default(), config }) })
    }

    /// POSTs `body` to `url` with `headers` (plus `content-type: application/json` when `headers` has no
    /// content type). Never follows redirects, never uses a proxy from the environment.
    ///
    /// The URL is checked with [`EgressPolicy::check_url`] first and every resolved address with
    /// [`EgressPolicy::check_ip`]; either refusal is [`SendOutcome::Blocked`] with no connection made. The whole
    /// exchange, reading the body included, is bounded by [`SenderConfig::timeout`].
    pub async fn send(&self, url: &str, mut headers: HeaderMap, body: Bytes) -> SendOutcome {
        let started = Instant::now();
        let target = match self.inner.checked.check(&self.inner.policy, url) {
            Ok(target) => target,
            Err(rejection) => {
                return SendOutcome::Blocked { reason: rejection_reason(&rejection), duration: started.elapsed() }
            }
        };
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, self.inner.user_agent.clone());
        }
        let Some(uri) = target.uri.clone() else {
            let error = "request error: the URL is not a valid HTTP request target".to_owned();
            return SendOutcome::Network { error, duration: started.elapsed() };
        };
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let max_bytes = self.inner.config.max_response_bytes;
        let client = &self.inner.client;
        let exchange = async move {
            let response = client.request(request).await.map_err(ExchangeError::Client)?;
            read_response(response, max_bytes).await.map_err(ExchangeError::Body)
        };
        // One bound around everything: connecting, sending, waiting for the answer and reading its body.
        let outcome = match tokio::time::timeout(self.inner.config.timeout, exchange).await {
            Err(_elapsed) => SendOutcome::Timeout { duration: started.elapsed() },
            Ok(Ok(answer)) => SendOutcome::Response {
                status: answer.status,
                retry_after: answer.retry_after,
                excerpt: answer.excerpt,
                duration: started.elapsed(),
            },
            Ok(Err(err)) => error_outcome(&err, &target.url, started.elapsed()),
        };
        if let SendOutcome::Blocked { reason, .. } = &outcome {
            tracing::debug!(host = target.url.host_str(), %reason, "webhook target blocked at connect time");
        }
        outcome
    }
}

/// The most URLs [`CheckedUrls`] keeps; when full it starts again from empty.
const MAX_CHECKED_URLS: usize = 4096;

/// URLs the policy accepted, so that a busy endpoint's URL is parsed and checked once rather than on every send
/// (parsing with IDNA processing was ≈ 6,000 instructions a send). The policy cannot change during the process,
/// so an accepted URL stays accepted; a rejected one is not kept (it is rare, and its reason is made each time).
/// What resolves from the host is still checked on every connection, by the resolver.
#[derive(Default)]
struct CheckedUrls {
    accepted: std::sync::Mutex<std::collections::HashMap<String, Arc<Checked>>>,
}

/// A URL the policy accepted, with the request target it becomes.
struct Checked {
    url: WebhookUrl,
    /// `None` when the URL, although valid, is not a URI `http` accepts (nothing the policy lets through is known
    /// to be such a URL; the send then fails as a request error rather than panicking).
    uri: Option<Uri>,
}

impl CheckedUrls {
    fn check(&self, policy: &EgressPolicy, url: &str) -> Result<Arc<Checked>, UrlRejection> {
        if let Some(found) = self.lock().get(url) {
            return Ok(found.clone());
        }
        let checked = policy.check_url(url)?;
        let uri = Uri::try_from(checked.as_str()).ok();
        let target = Arc::new(Checked { url: checked, uri });
        let mut accepted = self.lock();
        if accepted.len() >= MAX_CHECKED_URLS {
            accepted.clear();
        }
        accepted.insert(url.to_owned(), target.clone());
        Ok(target)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<Checked>>> {
        self.accepted.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `egress: ` + the rejection; for a blocked IP literal also the address and its class.
fn rejection_reason(rejection: &UrlRejection) -> String {
    match rejection {
        UrlRejection::BlockedAddress(address) => format!("egress: {rejection} ({address})"),
        _ => format!("egress: {rejection}"),
    }
}

/// The facts read from a response.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    excerpt: String,
}

/// Reads status, `Retry-After` and at most `max_bytes` of the body chunk by chunk, keeping the first
/// [`EXCERPT_BYTES`]. Dropping the response afterwards closes the connection if the body was not finished.
async fn read_response(
    response: http::Response<hyper::body::Incoming>,
    max_bytes: usize,
) -> Result<Answer, hyper::Error> {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
    let keep = EXCERPT_BYTES.min(max_bytes);
    let mut kept: Vec<u8> = Vec::with_capacity(keep);
    let mut read = 0usize;
    let mut cut = false;
    let mut body = response.into_body();
    while read < max_bytes {
        let Some(frame) = body.frame().await.transpose()? else {
            break;
        };
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        read = read.saturating_add(chunk.len());
        let room = keep - kept.len();
        if chunk.len() > room {
            cut = true;
        }
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(Answer { status, retry_after, excerpt: excerpt(&kept, cut) })
}

/// The excerpt of a body that began with `bytes`: text the delivery log can always store.
///
/// The bytes are decoded first (lossy UTF-8) and the text is cut afterwards, on a character boundary, to at most
/// [`EXCERPT_BYTES`]: decoding after cutting would let each invalid byte grow into a 3-byte U+FFFD and push the
/// text past the log's 1 KiB limit. NUL, the one character PostgreSQL refuses in `text`, is replaced by U+FFFD
/// rather than dropped, so the excerpt still shows that a byte was there, just like any other byte that is not
/// text. When `cut` (the bytes are a prefix of a longer body), an incomplete character at the end is dropped
/// instead of turning into U+FFFD.
fn excerpt(bytes: &[u8], cut: bool) -> String {
    let end = if cut { char_boundary_before_end(bytes) } else { bytes.len() };
    let mut text = String::from_utf8_lossy(&bytes[..end]).replace('\0', "\u{FFFD}");
    truncate_at_char_boundary(&mut text, EXCERPT_BYTES);
    text
}

/// The length of `bytes` without a trailing incomplete UTF-8 sequence (a lead byte followed by fewer
/// continuation bytes than it announces).
fn char_boundary_before_end(bytes: &[u8]) -> usize {
    let len = bytes.len();
    // A character is at most 4 bytes: look at most 3 continuation bytes back for its lead byte.
    for back in 1..=len.min(4) {
        let i = len - back;
        let byte = bytes[i];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // continuation byte
        }
        let width = match byte {
            b if b & 0b1000_0000 == 0 => 1,
            b if b & 0b1110_0000 == 0b1100_0000 => 2,
            b if b & 0b1111_0000 == 0b1110_0000 => 3,
            b if b & 0b1111_1000 == 0b1111_0000 => 4,
            _ => return len, // not a lead byte: invalid anyway, leave it to the lossy decoding
        };
        return if back < width { i } else { len };
    }
    len
}

/// Why [`Sender::new`] could not build the client.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the user agent is not a valid header value")]
    UserAgent,
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// rustls with the `ring` provider and its safe default protocol versions (TLS 1.2 and 1.3).
pub fn tls_config_builder() -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, rustls::Error>
{
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
}

/// What failed in an exchange that got no complete answer.
#[derive(Debug)]
enum ExchangeError {
    /// Connecting (resolving, TCP, TLS), sending the request or reading the response head.
    Client(hyper_util::client::legacy::Error),
    /// Reading the response body.
    Body(hyper::Error),
}

impl ExchangeError {
    fn source_chain(&self) -> &(dyn StdError + 'static) {
        match self {
            ExchangeError::Client(e) => e,
            ExchangeError::Body(e) => e,
        }
    }
}

/// Maps a failed exchange: our resolver's [`EgressBlocked`] → `Blocked`, a connect timeout → `Timeout`, anything
/// else → `Network` with a one-line, URL-free description.
fn error_outcome(err: &ExchangeError, target: &WebhookUrl, duration: Duration) -> SendOutcome {
    if let Some(blocked) = find_source::<EgressBlocked>(err.source_chain()) {
        return SendOutcome::Blocked { reason: blocked.to_string(), duration };
    }
    if find_source::<std::io::Error>(err.source_chain()).is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut) {
        return SendOutcome::Timeout { duration };
    }
    SendOutcome::Network { error: describe_error(err, target), duration }
}

/// The first error of type `T` in `err`'s source chain (including `err` itself).
fn find_source<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// `"<what failed>: <source>: <source>..."` on one line, at most [`MAX_ERROR_LEN`] bytes, without the URL.
fn describe_error(err: &ExchangeError, target: &WebhookUrl) -> String {
    let kind = match err {
        ExchangeError::Client(e) if e.is_connect() => "connect error",
        ExchangeError::Client(_) => "request error",
        ExchangeError::Body(_) => "response body error",
    };
    let mut text = kind.to_owned();
    let mut current = match err {
        ExchangeError::Client(e) => e.source(),
        // The body error is the cause itself (hyper's own message), not a wrapper.
        ExchangeError::Body(e) => Some(e as &(dyn StdError + 'static)),
    };
    while let Some(error) = current {
        let message = error.to_string();
        // Wrappers often repeat their cause in their own message; keep each piece once.
        if !message.is_empty() && !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        current = error.source();
    }
    scrub(&text, target)
}

/// One line, no URL path or query, no NUL (PostgreSQL refuses it in `text`), at most [`MAX_ERROR_LEN`] bytes.
fn scrub(text: &str, target: &WebhookUrl) -> String {
    let mut text = text.replace(['\r', '\n', '\0'], " ");
    // Nothing guarantees that no error in the chain ever echoes the URL.
    let url = target.url();
    text = text.replace(target.as_str(), &target.redacted());
    if let Some(query) = url.query().filter(|query| !query.is_empty()) {
        text = text.replace(query, "…");
    }
    if url.path().len() > 1 {
        text = text.replace(url.path(), "/…");
    }
    truncate_at_char_boundary(&mut text, MAX_ERROR_LEN);
    text
}

fn truncate_at_char_boundary(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

#[cfg(test)]
mod tests;
