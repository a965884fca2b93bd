//! Logging and tracing set-up, in one place. The log writer is a parameter so tests can capture or silence output.
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over OTLP (HTTP, protobuf, to
//! `<endpoint>/v1/traces`) in batches. The W3C trace-context propagator and the OpenTelemetry layer are installed
//! either way, so a trace arriving in a request's or message's `traceparent` is continued into the headers this
//! process writes whether or not it exports spans: without the layer, tracing spans carry no OpenTelemetry context
//! and there would be nothing to propagate. The exporter uses the workspace's reqwest client through a small
//! adapter rather than pulling in a second HTTP stack.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Keeps the trace exporter running; dropping it flushes the spans still buffered.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    /// The exporting provider only: the one without an exporter has nothing to flush, and shutting it down would
    /// make every later span context-less, so it lives on in the installed layer instead.
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` (default `default_filter`) filters, one line per event, written by
/// `writer`. Returns quietly if a subscriber is already installed (tests boot many services in one process).
pub fn init<W>(default_filter: &str, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let _ = init_service("crm-webhook-sync", default_filter, writer, None);
}

/// Like [`init`], and with `otlp_endpoint` also exports spans as `service`.
pub fn init_service<W>(service: &'static str, default_filter: &str, writer: W, otlp_endpoint: Option<&str>) -> Telemetry
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_target(true).with_writer(writer);
    let provider = otlp_endpoint.and_then(|endpoint| match exporter(endpoint) {
        Ok(exporter) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name(service).build())
                .build(),
        ),
        Err(e) => {
            eprintln!("{service}: trace export disabled: {e}");
            None
        }
    });
    let otel = match &provider {
        Some(provider) => tracing_opentelemetry::layer().with_tracer(provider.tracer(service)),
        None => propagate_only(service),
    };
    let _ = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init();
    Telemetry { provider }
}

/// The OpenTelemetry layer of a process that exports nothing: spans still get real span contexts (trace id from
/// the remote parent, a span id of their own) so [`crate::trace::current_headers`] has something to inject.
///
/// The provider has no span processor, so a finished span is simply dropped. The sampler is fixed at
/// `ParentBased(AlwaysOn)` (whatever `OTEL_TRACES_SAMPLER` says): a process that exports nothing has no sampling
/// decision of its own to make, so it passes the caller's sampled flag on unchanged, and marks traces it starts as
/// sampled so an exporting process downstream records its part. Only a sampled span carries the sampled flag
/// forward, so spans are recorded in memory until they close; the per-span attributes nobody will read (source
/// location, thread, busy/idle timings) are left out to keep that cheap.
fn propagate_only<S>(
    service: &'static str,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let provider = SdkTracerProvider::builder().with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn))).build();
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
}

fn exporter(endpoint: &str) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OtlpHttp {
            client: reqwest::Client::new(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
        .with_endpoint(url)
        .build()
}

/// The OTLP exporter's HTTP client: the workspace's reqwest. The SDK's batch processor exports from a thread of
/// its own, outside any tokio runtime, so each request runs as a task on the service's runtime (captured when
/// telemetry is set up) and the processor waits for that task.
#[derive(Debug)]
struct OtlpHttp {
    client: reqwest::Client,
    runtime: Option<tokio::runtime::Handle>,
}

async fn send(
    client: reqwest::Client,
    request: http::Request<bytes::Bytes>,
) -> Result<http::Response<bytes::Bytes>, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttp {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let runtime = self.runtime.as_ref().ok_or("trace export needs a tokio runtime")?;
        Ok(runtime.spawn(send(self.client.clone(), request)).await??)
    }
}
