//! Tracing across the pipeline: one trace from the API request, through the outbox relay's publish (W3C
//! `traceparent` in the NATS message headers), to the delivery attempt; and OTLP export from the real binary.

use crm_tests::Pipeline;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::test]
async fn one_trace_runs_from_the_api_request_to_the_delivery_attempt() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .init();

    let p = Pipeline::spawn().await;
    let (ws, token) = p.workspace(&p.receiver.url("/in"), "a-long-enough-plain-secret").await;
    p.api.interest(ws, &token, "traced@example.com").await.expect(201);
    let got = p.receiver.wait_for(1, Duration::from_secs(10)).await;
    p.wait_status(ws, &token, &got[0].webhook_id(), "succeeded", Duration::from_secs(5)).await;
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().expect("spans");
    let attempt = spans.iter().find(|s| s.name == "webhook.attempt").expect("an attempt span");
    let trace = attempt.span_context.trace_id();
    let names: Vec<&str> =
        spans.iter().filter(|s| s.span_context.trace_id() == trace).map(|s| s.name.as_ref()).collect();
    for expected in ["http.request", "outbox.publish", "webhook.delivery", "webhook.attempt"] {
        assert!(names.contains(&expected), "{expected} is not in the attempt's trace: {names:?}");
    }
    let request = spans
        .iter()
        .find(|s| s.name == "http.request" && s.span_context.trace_id() == trace)
        .expect("the request span");
    assert!(
        request
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "http.route" && kv.value.as_str().contains("/crm/interest")),
        "the trace starts at the interest request: {:?}",
        request.attributes
    );
    let publish = spans.iter().find(|s| s.name == "outbox.publish" && s.span_context.trace_id() == trace).unwrap();
    let delivery = spans.iter().find(|s| s.name == "webhook.delivery" && s.span_context.trace_id() == trace).unwrap();
    assert_eq!(delivery.parent_span_id, publish.span_context.span_id(), "the delivery continues from the publish");
    // The receiver is outside our trace: no trace context leaks into the webhook request.
    assert!(got[0].headers.get("traceparent").is_none());
}

/// What the stand-in collector received: (path, content type, body length) per request.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String, usize)>>>;

#[tokio::test]
async fn the_binary_exports_spans_over_otlp() {
    use axum::body::Bytes;
    use std::sync::Arc;
    // A stand-in OTLP/HTTP collector.
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: Bytes| {
        let record = record.clone();
        async move {
            let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            record.lock().unwrap().push((uri.path().to_owned(), ct, body.len()));
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let db = crm_tests::TestDb::create().await;
    let stream = crm_tests::TestStream::new(&crm_tests::shared_nats_url());
    let port = crm_tests::free_port();
    let mut env = crm_tests::base_env(&db, &stream);
    env.insert("CRM_API_ADDR".into(), format!("127.0.0.1:{port}"));
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://127.0.0.1:{collector}"));
    let bin = crm_bench::stack::bin_dir().join("crm-api");
    let mut api =
        crm_bench::stack::Service::spawn_ready_at("crm-api", &bin, env.clone(), port, &std::env::temp_dir(), "/readyz")
            .await
            .expect("crm-api starts");
    reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap();
    let status = api.terminate().await.expect("exit status");
    assert!(status.success());
    let exports = |seen: &Seen| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(path, ct, len)| path == "/v1/traces" && ct == "application/x-protobuf" && *len > 0)
            .count()
    };
    let from_api = exports(&seen);
    assert!(from_api > 0, "no OTLP trace export from crm-api reached the collector: {:?}", seen.lock().unwrap());

    // The worker exports the same way.
    let worker_port = crm_tests::free_port();
    env.insert("WORKER_ADDR".into(), format!("127.0.0.1:{worker_port}"));
    let bin = crm_bench::stack::bin_dir().join("delivery-worker");
    let mut worker = crm_bench::stack::Service::spawn_ready_at(
        "delivery-worker",
        &bin,
        env,
        worker_port,
        &std::env::temp_dir(),
        "/readyz",
    )
    .await
    .expect("delivery-worker starts");
    reqwest::get(format!("http://127.0.0.1:{worker_port}/healthz")).await.unwrap();
    assert!(worker.terminate().await.expect("exit status").success());
    assert!(exports(&seen) > from_api, "no OTLP trace export from delivery-worker reached the collector");
}

/// The real crm-api binary, started the way production starts it without a collector (no
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: the child's environment is cleared), so it runs `init_service(.., None)` and not
/// this test process's subscriber. A caller's `traceparent` still has to reach the published message.
#[tokio::test]
async fn a_callers_trace_reaches_the_stream_without_an_exporter() {
    use futures::StreamExt;
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER_SPAN: &str = "00f067aa0ba902b7";

    let db = crm_tests::TestDb::create().await;
    let stream = crm_tests::TestStream::new(&crm_tests::shared_nats_url());
    let port = crm_tests::free_port();
    let mut env = crm_tests::base_env(&db, &stream);
    env.insert("CRM_API_ADDR".into(), format!("127.0.0.1:{port}"));
    assert!(!env.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let bin = crm_bench::stack::bin_dir().join("crm-api");
    let mut service = crm_bench::stack::Service::spawn("crm-api", &bin, env, port, &std::env::temp_dir())
        .await
        .expect("crm-api starts");

    // Listen on the stream's subjects before the change, so the publish is awaited as it happens.
    let nats = async_nats::connect(&stream.nats_url).await.expect("connect to NATS");
    let mut published = nats.subscribe(format!("{}.>", stream.prefix)).await.expect("subscribe");
    nats.flush().await.expect("flush");

    let api = crm_tests::Api::new(format!("http://127.0.0.1:{port}"));
    let ws = api.create_workspace("Traced").await;
    let token = api.create_token(ws, "editor").await;
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    api.send(
        reqwest::Method::POST,
        &format!("/v1/workspaces/{ws}/crm/interest"),
        Some(&token),
        Some(&crm_tests::api::interest_body("traced@example.com")),
        &[("traceparent", traceparent.as_str())],
    )
    .await
    .expect(201);

    let message = tokio::time::timeout(Duration::from_secs(20), published.next())
        .await
        .expect("the change is published")
        .expect("subscription open");
    let header = message
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .map(|v| v.as_str().to_owned())
        .expect("the published message carries a traceparent");
    let parts: Vec<&str> = header.split('-').collect();
    assert_eq!(parts.len(), 4, "{header}");
    assert_eq!(parts[1], TRACE_ID, "the message continues the caller's trace: {header}");
    assert_ne!(parts[2], CALLER_SPAN, "the parent is a span of ours, not the caller's: {header}");
    assert_eq!(parts[3], "01", "the caller's sampling decision is kept: {header}");

    assert!(service.terminate().await.expect("exit status").success());
}
