//! Sender tests against tiny raw-TCP HTTP servers on 127.0.0.1:0; each server counts the connections it accepts,
//! so "no connection was made" is observable.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use egress::EgressPolicy;
use http::header::{HeaderMap, HeaderValue};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// What a test server does once it has read a request.
#[derive(Clone)]
enum Reply {
    /// Write these bytes (a full HTTP response) and keep the connection open for reuse.
    Fixed(Vec<u8>),
    /// Sleep, then write.
    Delayed(Duration, Vec<u8>),
    /// Write a response head without length and then body bytes forever (until the client goes away).
    Endless,
    /// Write a response head announcing a body, then stall.
    StallBody,
}

struct TestServer {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl TestServer {
    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }
}

async fn serve(reply: Reply) -> TestServer {
    listen(reply, None).await
}

/// Accepts connections on 127.0.0.1:0, counting them, and answers each one's requests with `reply`, after a TLS
/// handshake when there is an acceptor.
async fn listen(reply: Reply, tls: Option<tokio_rustls::TlsAcceptor>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (accept_count, seen) = (accepts.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            accept_count.fetch_add(1, Ordering::SeqCst);
            let (reply, seen) = (reply.clone(), seen.clone());
            match tls.clone() {
                None => tokio::spawn(handle(stream, reply, seen)),
                Some(acceptor) => tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        handle(stream, reply, seen).await;
                    }
                }),
            };
        }
    });
    TestServer { addr, accepts, requests }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, reply: Reply, seen: Arc<Mutex<Vec<Vec<u8>>>>) {
    loop {
        let Some(request) = read_request(&mut stream).await else { return };
        seen.lock().unwrap().push(request);
        match &reply {
            Reply::Fixed(bytes) => {
                if stream.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Reply::Delayed(delay, bytes) => {
                tokio::time::sleep(*delay).await;
                let _ = stream.write_all(bytes).await;
                return;
            }
            Reply::Endless => {
                let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n";
                if stream.write_all(head).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 8192];
                while stream.write_all(&chunk).await.is_ok() {}
                return;
            }
            Reply::StallBody => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial").await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
        }
    }
}

/// Reads one request (head + content-length body); `None` at EOF.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Some(buf)
}

/// A server like [`serve`], behind TLS with the certificate of `tls.example` that the test authority issued
/// (`testdata/`, see its README). `accepts` counts TCP connections, `requests` what came through the handshake.
async fn serve_tls(reply: Reply) -> TestServer {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![CertificateDer::from_pem_slice(include_bytes!("testdata/tls.example.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/tls.example.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    listen(reply, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
}

/// The client side of the test authority: rustls trusting only it.
fn test_authority() -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(include_bytes!("testdata/ca.pem")).unwrap()).unwrap();
    tls_config_builder().unwrap().with_root_certificates(roots).with_no_client_auth()
}

/// `tls.example` and `other.example` resolve to 127.0.0.1.
fn tls_lookup() -> Arc<dyn NameLookup> {
    let loopback = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    Arc::new(StaticLookup::new(HashMap::from([
        ("tls.example".to_owned(), loopback.clone()),
        ("other.example".to_owned(), loopback),
    ])))
}

fn response(status: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra_headers}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// http allowed, loopback exempt.
fn loopback_policy() -> EgressPolicy {
    EgressPolicy::from_settings(Some("true"), Some("127.0.0.0/8")).unwrap()
}

/// http allowed, nothing exempt.
fn strict_http_policy() -> EgressPolicy {
    EgressPolicy::from_settings(Some("true"), None).unwrap()
}

fn config(timeout: Duration) -> SenderConfig {
    SenderConfig { timeout, max_response_bytes: 64 * 1024, user_agent: "crm-webhook/test".to_owned() }
}

fn rebind_lookup() -> Arc<dyn NameLookup> {
    Arc::new(StaticLookup::new(HashMap::from([("rebind.example".to_owned(), vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])])))
}

fn sender(policy: EgressPolicy, timeout: Duration) -> Sender {
    Sender::new(policy, config(timeout), rebind_lookup()).unwrap()
}

fn body() -> Bytes {
    Bytes::from_static(br#"{"id":"evt_1"}"#)
}

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-crm-webhook-id", HeaderValue::from_static("evt_1"));
    headers
}

#[tokio::test]
async fn success_with_excerpt_truncated_to_1024_bytes() {
    let big: Vec<u8> = (0..5 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let server = serve(Reply::Fixed(response("200 OK", "content-type: text/plain\r\n", &big))).await;
    let sender = sender(loopback_policy(), Duration::from_secs(5));
    let outcome =
        sender.send(&format!("http://127.0.0.1:{}/hooks/crm?token=s3cret", server.port()), headers(), body()).await;
    let SendOutcome::Response { status, retry_after, excerpt, duration } = outcome else {
        panic!("expected a response, got {outcome:?}");
    };
    assert_eq!(status, 200);
    assert_eq!(retry_after, None);
    assert_eq!(excerpt.len(), 1024);
    assert_eq!(excerpt.as_bytes(), &big[..1024]);
    assert!(duration < Duration::from_secs(5));

    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let request = String::from_utf8_lossy(&requests[0]).into_owned();
    assert!(request.starts_with("POST /hooks/crm?token=s3cret HTTP/1.1\r\n"), "{request}");
    let lower = request.to_ascii_lowercase();
    assert!(lower.contains("x-crm-webhook-id: evt_1\r\n"), "{request}");
    assert!(lower.contains("content-type: application/json\r\n"), "{request}");
    assert!(lower.contains("user-agent: crm-webhook/test\r\n"), "{request}");
    assert!(request.ends_with(r#"{"id":"evt_1"}"#), "{request}");
}

#[tokio::test]
async fn connections_are_reused() {
    let server = serve(Reply::Fixed(response("204 No Content", "", b""))).await;
    let sender = sender(loopback_policy(), Duration::from_secs(5));
    let url = format!("http://127.0.0.1:{}/", server.port());
    for _ in 0..3 {
        let outcome = sender.send(&url, headers(), body()).await;
        assert!(matches!(outcome, SendOutcome::Response { status: 204, .. }), "{outcome:?}");
    }
    assert_eq!(server.accepts(), 1);
    assert_eq!(server.requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn excerpt_is_cut_back_to_a_char_boundary() {
    // 'a' then 'é' (2 bytes) repeated: byte 1024 falls in the middle of an 'é'.
    let mut text = String::from("a");
    while text.len() < 3000 {
        text.push('é');
    }
    let server = serve(Reply::Fixed(response("200 OK", "", text.as_bytes()))).await;
    let sender = sender(loopback_policy(), Duration::from_secs(5));
    let outcome = sender.send(&format!("http://127.0.0.1:{}/", server.port()), headers(), body()).await;
    let SendOutcome::Response { excerpt, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(excerpt.len(), 1023);
    assert!(!excerpt.contains('\u{FFFD}'));
    assert!(text.starts_with(&excerpt));
}

#[tokio::test]
async fn redirect_is_returned_not_followed() {
    let target = serve(Reply::Fixed(response("200 OK", "", b"target"))).await;
    let location = format!("location: http://127.0.0.1:{}/internal\r\n", target.port());
    let server = serve(Reply::Fixed(response("302 Found", &location, b""))).await;
    let sender = sender(loopback_policy(), Duration::from_secs(5));
    let outcome = sender.send(&format!("http://127.0.0.1:{}/", server.port()), headers(), body()).await;
    assert!(matches!(outcome, SendOutcome::Response { status: 302, .. }), "{outcome:?}");
    // Give a (wrongly) followed redirect time to show up.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(target.accepts(), 0);
    assert!(target.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn retry_after_is_parsed() {
    let server = serve(Reply::Fixed(response("503 Service Unavailable", "retry-after: 120\r\n", b"busy"))).await;
    let sender = sender(loopback_policy(), Duration::from_secs(5));
    let outcome = sender.send(&format!("http://127.0.0.1:{}/", server.port()), headers(), body()).await;
    let SendOutcome::Response { status, retry_after, excerpt, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!((status, retry_after, excerpt.as_str()), (503, Some(Duration::from_secs(120)), "busy"));
}

#[tokio::test]
async fn slow_response_is_a_timeout() {
    let server = serve(Reply::Delayed(Duration::from_secs(3), response("200 OK", "", b"late"))).await;
    let sender = sender(loopback_policy(), Duration::from_millis(200));
    let outcome = sender.send(&format!("http://127.0.0.1:{}/", server.port()), headers(), body()).await;
    let SendOutcome::Timeout { duration } = outcome else { panic!("expected a timeout, got {outcome:?}") };
    assert!(duration >= Duration::from_millis(190) && duration < Duration::from_secs(2), "{duration:?}");
}

#[tokio::test]
async fn stalled_body_is_a_timeout() {
    let server = serve(Reply::StallBody).await;
    let sender = sender(loopback_policy(), Duration::from_millis(200));
    let outcome = sender.send(&format!("http://127.0.0.1:{}/", server.port()), headers(), body()).await;
    let SendOutcome::Timeout { duration } = outcome else { panic!("expected a timeout, got {outcome:?}") };
    assert!(duration < Duration::from_secs(2), "{duration:?}");
}

#[tokio::test]
async fn endless_body_stops_after_max_bytes() {
    let server = serve(Reply::Endless).await;
    let sender = sender(loopback_policy(), Duration::from_secs(20));
    let url = format!("http://127.0.0.1:{}/", server.port());
    let send = sender.send(&url, headers(), body());
    let outcome = tokio::time::timeout(Duration::from_secs(5), send).await.expect("the sender must not hang");
    let SendOutcome::Response { status, excerpt, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(status, 200);
    assert_eq!(excerpt, "x".repeat(1024));
}

#[tokio::test]
async fn literal_loopback_url_is_blocked_without_connecting() {
    let server = serve(Reply::Fixed(response("200 OK", "", b""))).await;
    let sender = sender(strict_http_policy(), Duration::from_secs(5));
    let outcome =
        sender.send(&format!("http://127.0.0.1:{}/secret?token=s3cret", server.port()), headers(), body()).await;
    let SendOutcome::Blocked { reason, .. } = outcome else { panic!("expected blocked, got {outcome:?}") };
    assert!(reason.starts_with("egress: "), "{reason}");
    assert!(reason.contains("loopback"), "{reason}");
    assert!(!reason.contains("secret"), "{reason}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.accepts(), 0);
}

#[tokio::test]
async fn url_rejections_are_blocked() {
    let sender = sender(EgressPolicy::strict(), Duration::from_secs(5));
    let outcome = sender.send("http://crm.example.com/hook", headers(), body()).await;
    assert!(
        matches!(&outcome, SendOutcome::Blocked { reason, .. } if reason == "egress: must use https"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn name_resolving_to_loopback_is_blocked_without_connecting() {
    let server = serve(Reply::Fixed(response("200 OK", "", b""))).await;
    let sender = sender(strict_http_policy(), Duration::from_secs(5));
    let outcome =
        sender.send(&format!("http://rebind.example:{}/path?token=s3cret", server.port()), headers(), body()).await;
    let SendOutcome::Blocked { reason, .. } = outcome else { panic!("expected blocked, got {outcome:?}") };
    assert_eq!(reason, "egress: rebind.example resolves only to blocked addresses: 127.0.0.1 (loopback)");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.accepts(), 0);
}

#[tokio::test]
async fn name_resolving_to_exempt_loopback_is_sent() {
    let server = serve(Reply::Fixed(response("200 OK", "", b"ok"))).await;
    let sender = sender(loopback_policy(), Duration::from_secs(5));
    let outcome = sender.send(&format!("http://rebind.example:{}/", server.port()), headers(), body()).await;
    assert!(matches!(&outcome, SendOutcome::Response { status: 200, excerpt, .. } if excerpt == "ok"), "{outcome:?}");
    assert_eq!(server.accepts(), 1);
    let request = String::from_utf8_lossy(&server.requests.lock().unwrap()[0]).to_ascii_lowercase();
    assert!(request.contains(&format!("host: rebind.example:{}\r\n", server.port())), "{request}");
}

#[tokio::test]
async fn unknown_name_is_a_network_error() {
    let sender = sender(loopback_policy(), Duration::from_secs(5));
    let outcome = sender.send("http://unknown.example:8080/path?token=s3cret", headers(), body()).await;
    let SendOutcome::Network { error, .. } = outcome else { panic!("expected a network error, got {outcome:?}") };
    assert!(error.contains("unknown.example"), "{error}");
    assert!(!error.contains("s3cret") && !error.contains("/path"), "{error}");
}

#[tokio::test]
async fn connection_refused_is_a_network_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let sender = sender(loopback_policy(), Duration::from_secs(5));
    let outcome = sender.send(&format!("http://127.0.0.1:{port}/hooks?token=s3cret"), headers(), body()).await;
    let SendOutcome::Network { error, .. } = outcome else { panic!("expected a network error, got {outcome:?}") };
    assert!(error.starts_with("connect error: "), "{error}");
    assert!(error.to_ascii_lowercase().contains("connection refused"), "{error}");
    assert!(!error.contains("s3cret") && !error.contains("/hooks") && !error.contains('\n'), "{error}");
}

#[test]
fn retry_after_seconds() {
    let now = SystemTime::now();
    assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("99999999999999999999999", now), Some(Duration::from_secs(u64::MAX)));
}

#[test]
fn retry_after_http_date() {
    let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
    // The obsolete formats RFC 9110 requires recipients to accept.
    assert_eq!(parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now), Some(Duration::from_secs(60)));
    assert_eq!(parse_retry_after("Wed Oct 21 07:28:30 2015", now), Some(Duration::from_secs(30)));
}

#[test]
fn retry_after_garbage() {
    let now = SystemTime::now();
    for value in ["", "  ", "-1", "1.5", "soon", "120s", "2015-10-21T07:28:00Z", "Wed, 32 Oct 2015 07:28:00 GMT"] {
        assert_eq!(parse_retry_after(value, now), None, "{value:?}");
    }
}

#[test]
fn char_boundary_cut() {
    assert_eq!(char_boundary_before_end(b""), 0);
    assert_eq!(char_boundary_before_end(b"abc"), 3);
    let euro = "€".as_bytes(); // 3 bytes
    assert_eq!(char_boundary_before_end(&[b'a', euro[0]]), 1);
    assert_eq!(char_boundary_before_end(&[b'a', euro[0], euro[1]]), 1);
    assert_eq!(char_boundary_before_end(&[b'a', euro[0], euro[1], euro[2]]), 4);
    let crab = "🦀".as_bytes(); // 4 bytes
    assert_eq!(char_boundary_before_end(&crab[..3]), 0);
    assert_eq!(char_boundary_before_end(crab), 4);
    // Invalid bytes are left to the lossy decoding.
    assert_eq!(char_boundary_before_end(&[b'a', 0xff]), 2);
    assert_eq!(excerpt(&[b'a', 0xff], true), "a\u{FFFD}");
    assert_eq!(excerpt(&[b'a', euro[0]], false), "a\u{FFFD}");
    assert_eq!(excerpt(&[b'a', euro[0]], true), "a");
}

#[test]
fn scrub_removes_url_path_and_query() {
    let policy = EgressPolicy::strict();
    let target = policy.check_url("https://crm.example.com/hooks/abc?token=s3cret").unwrap();
    let text = scrub("failed for https://crm.example.com/hooks/abc?token=s3cret\nand token=s3cret", &target);
    assert_eq!(text, "failed for https://crm.example.com/… and …");
    let long = "é".repeat(400);
    assert_eq!(scrub(&long, &target).len(), 512);
}

#[test]
fn excerpt_decodes_before_cutting_and_replaces_nul() {
    // A NUL is refused by PostgreSQL in `text`; it shows as U+FFFD like any other byte that is not text.
    assert_eq!(excerpt(b"ok\0", false), "ok\u{FFFD}");
    // 1 KiB of invalid bytes decodes to 1024 × U+FFFD (3 KiB): the text is cut, not the bytes.
    let invalid = excerpt(&[0xff; 1024], false);
    assert_eq!(invalid, "\u{FFFD}".repeat(341));
    assert_eq!(invalid.len(), 1023);
    // A Latin-1 error page: the one non-UTF-8 byte becomes U+FFFD, the rest is kept.
    assert_eq!(excerpt(b"Erreur: donn\xe9es invalides", false), "Erreur: donn\u{FFFD}es invalides");
}

#[tokio::test]
async fn nul_and_invalid_bytes_in_a_body_give_a_storable_excerpt() {
    let mut answer = b"ok\0".to_vec();
    answer.extend(std::iter::repeat_n(0xff, 2000));
    let server = serve(Reply::Fixed(response("200 OK", "", &answer))).await;
    let sender = sender(loopback_policy(), Duration::from_secs(5));
    let outcome = sender.send(&format!("http://127.0.0.1:{}/", server.port()), headers(), body()).await;
    let SendOutcome::Response { status, excerpt, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(status, 200);
    assert!(excerpt.len() <= EXCERPT_BYTES && !excerpt.contains('\0'), "{excerpt:?}");
    assert_eq!(excerpt, format!("ok{}", "\u{FFFD}".repeat(340)));
}

#[test]
fn scrub_replaces_nul() {
    let policy = EgressPolicy::strict();
    let target = policy.check_url("https://crm.example.com/").unwrap();
    assert_eq!(scrub("bad\0frame", &target), "bad frame");
}

#[test]
fn an_accepted_url_is_checked_once_and_a_rejected_one_every_time() {
    let checked = CheckedUrls::default();
    let policy = EgressPolicy::strict();
    let url = "https://crm.example.com/hooks/abc";
    let first = checked.check(&policy, url).unwrap();
    let again = checked.check(&policy, url).unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the second send reuses the first check");
    assert_eq!(again.url.as_str(), url);
    assert_eq!(again.uri.as_ref().map(|uri| uri.to_string()).as_deref(), Some(url), "the request target is kept too");
    // A rejection is not kept: the same URL is refused again, with its reason.
    for _ in 0..2 {
        assert!(matches!(checked.check(&policy, "https://127.0.0.1/in"), Err(UrlRejection::BlockedAddress(_))));
    }
    assert_eq!(checked.lock().len(), 1);
    // Bounded: when full it starts again from empty, and what was kept before is checked anew.
    for i in 0..MAX_CHECKED_URLS {
        checked.check(&policy, &format!("https://crm.example.com/hooks/{i}")).unwrap();
    }
    assert!(checked.lock().len() <= MAX_CHECKED_URLS);
    let after = checked.check(&policy, url).unwrap();
    assert!(!Arc::ptr_eq(&first, &after));
}

proptest::proptest! {
    /// Whatever bytes an endpoint answers with, the excerpt fits the log: at most 1 KiB of UTF-8, no NUL, and the
    /// longest such prefix of the body's lossy decoding (with NUL as U+FFFD), short of at most one character.
    #[test]
    fn excerpt_of_arbitrary_bytes_is_storable(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2 * EXCERPT_BYTES),
        cut: bool,
    ) {
        let text = excerpt(&bytes, cut);
        let decoded = String::from_utf8_lossy(&bytes).replace('\0', "\u{FFFD}");
        proptest::prop_assert!(text.len() <= EXCERPT_BYTES, "{} bytes", text.len());
        proptest::prop_assert!(!text.contains('\0'));
        proptest::prop_assert!(decoded.starts_with(&text), "{text:?} is not a prefix of {decoded:?}");
        if !cut {
            // Nothing is lost but what does not fit, and never more than one character's worth of it.
            let expected = if decoded.len() <= EXCERPT_BYTES { decoded.len() } else { EXCERPT_BYTES - 3 };
            proptest::prop_assert!(text.len() >= expected, "{} of {} bytes kept", text.len(), decoded.len());
        }
    }

    /// Valid text made only of multi-byte characters, cut anywhere: the cut never splits or garbles a character.
    #[test]
    fn excerpt_of_cut_text_has_no_replacement(text in "[é€🦀a]{0,600}", keep in 0usize..2400) {
        let bytes = text.as_bytes();
        let keep = keep.min(bytes.len());
        let got = excerpt(&bytes[..keep], keep < bytes.len());
        proptest::prop_assert!(text.starts_with(&got));
        proptest::prop_assert!(!got.contains(char::REPLACEMENT_CHARACTER), "{:?}", got);
        proptest::prop_assert!(got.len() <= EXCERPT_BYTES);
    }
}

#[tokio::test]
async fn https_is_sent_to_a_server_whose_certificate_chains_to_a_trusted_root() {
    let server = serve_tls(Reply::Fixed(response("200 OK", "", b"ok"))).await;
    let sender =
        Sender::with_tls(loopback_policy(), config(Duration::from_secs(5)), tls_lookup(), test_authority()).unwrap();
    for _ in 0..2 {
        let url = format!("https://tls.example:{}/hooks/crm?token=s3cret", server.port());
        let outcome = sender.send(&url, headers(), body()).await;
        assert!(
            matches!(&outcome, SendOutcome::Response { status: 200, excerpt, .. } if excerpt == "ok"),
            "{outcome:?}"
        );
    }
    assert_eq!(server.accepts(), 1, "the TLS connection is pooled and reused");
    let requests = server.requests.lock().unwrap();
    assert_eq!(requests.len(), 2);
    let request = String::from_utf8_lossy(&requests[0]);
    assert!(request.starts_with("POST /hooks/crm?token=s3cret HTTP/1.1\r\n"), "{request}");
    assert!(request.to_ascii_lowercase().contains(&format!("host: tls.example:{}\r\n", server.port())), "{request}");
    assert!(request.ends_with(r#"{"id":"evt_1"}"#), "{request}");
}

#[tokio::test]
async fn a_certificate_that_is_not_trusted_or_not_for_the_host_is_a_network_error_and_nothing_is_sent() {
    let server = serve_tls(Reply::Fixed(response("200 OK", "", b"ok"))).await;
    // Mozilla's roots (the production client) do not know the test authority.
    let public_roots = Sender::new(loopback_policy(), config(Duration::from_secs(5)), tls_lookup()).unwrap();
    let trusting =
        Sender::with_tls(loopback_policy(), config(Duration::from_secs(5)), tls_lookup(), test_authority()).unwrap();
    let cases = [
        (&public_roots, "tls.example", "UnknownIssuer"),
        // Trusted authority, but the certificate names tls.example only.
        (&trusting, "other.example", "not valid for name \"other.example\""),
    ];
    for (sender, host, why) in cases {
        let url = format!("https://{host}:{}/hooks/crm?token=s3cret", server.port());
        let outcome = sender.send(&url, headers(), body()).await;
        let SendOutcome::Network { error, .. } = &outcome else { panic!("expected a network error, got {outcome:?}") };
        assert!(error.starts_with("connect error: "), "{error}");
        assert!(error.contains("invalid peer certificate: ") && error.contains(why), "{error}");
        assert!(!error.contains("s3cret") && !error.contains("/hooks"), "{error}");
    }
    assert_eq!(server.accepts(), 2, "each handshake was tried");
    assert!(server.requests.lock().unwrap().is_empty(), "no request went out without a verified certificate");
}

#[test]
fn the_request_target_is_the_checked_url_as_the_policy_spelled_it() {
    let checked = CheckedUrls::default();
    let policy = EgressPolicy::strict();
    for (given, target) in [
        // An international name is sent as its ASCII form, a port the scheme implies is dropped.
        ("https://Bücher.example:443/hooks?id=1", "https://xn--bcher-kva.example/hooks?id=1"),
        // What the URL standard leaves alone in a path and a query is a valid request target too.
        ("https://crm.example.com/a|b/c'd?q=x|y&r=a^b", "https://crm.example.com/a|b/c'd?q=x|y&r=a^b"),
        ("https://crm.example.com/a b?q=<1>", "https://crm.example.com/a%20b?q=%3C1%3E"),
    ] {
        let found = checked.check(&policy, given).unwrap();
        assert_eq!(found.url.as_str(), target);
        assert_eq!(found.uri.as_ref().map(|uri| uri.to_string()).as_deref(), Some(target), "{given}");
    }
}

#[tokio::test]
async fn an_answer_that_is_not_http_or_no_answer_is_a_network_error() {
    let cases: [(&[u8], &str); 3] = [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "invalid HTTP version"),
        (b"HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n", "invalid HTTP status-code"),
        // The connection closes without a byte of answer.
        (b"", "connection closed before message completed"),
    ];
    for (answer, why) in cases {
        let server = serve(Reply::Delayed(Duration::ZERO, answer.to_vec())).await;
        let sender = sender(loopback_policy(), Duration::from_secs(5));
        let url = format!("http://127.0.0.1:{}/hooks/crm?token=s3cret", server.port());
        let outcome = sender.send(&url, headers(), body()).await;
        let SendOutcome::Network { error, .. } = &outcome else { panic!("expected a network error, got {outcome:?}") };
        assert!(error.starts_with("request error: ") && error.contains(why), "{error}");
        assert!(!error.contains("s3cret") && !error.contains("/hooks") && !error.contains('\n'), "{error}");
        assert_eq!(server.requests.lock().unwrap().len(), 1, "the request went out once, and was not retried");
    }
}
