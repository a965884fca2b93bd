//! Prometheus metrics plumbing: one registry per service, rendered in the text format at `/metrics`, and the HTTP
//! request metrics both services record. Labels are bounded: the matched route template (never the raw path or
//! query), the method and the status code.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A service's registry. Metrics are registered at build time; rendering takes the lock briefly.
#[derive(Clone, Default)]
pub struct MetricsRegistry {
    inner: Arc<Mutex<Registry>>,
}

impl MetricsRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers metrics while building a service.
    pub fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut registry = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut registry)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|registry| {
            let _ = prometheus_client::encoding::text::encode(&mut out, registry);
        });
        out
    }
}

/// Latency buckets from 0.5 ms to about 16 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

/// `http_requests_total` and `http_request_duration_seconds`.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
}

impl HttpMetrics {
    pub fn register(registry: &MetricsRegistry) -> Self {
        let metrics =
            HttpMetrics { requests: Family::default(), duration: Family::new_with_constructor(latency_histogram) };
        registry.with(|r| {
            r.register("http_requests", "HTTP requests by route and status", metrics.requests.clone());
            r.register("http_request_duration_seconds", "HTTP request latency by route", metrics.duration.clone());
        });
        metrics
    }
}

/// Axum middleware recording [`HttpMetrics`]. Unmatched paths are labelled `unmatched`, so a scanner cannot
/// grow the label set.
pub async fn track_http(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    // The request's span: where a trace starts (docs/contract.md §3: API request → publish → each delivery attempt).
    let span = tracing::info_span!("http.request", http.request.method = %method, http.route = %route);
    // A caller that sends `traceparent` owns the trace: the request (and the events it writes) joins it.
    crate::trace::set_parent_from_http(&span, request.headers());
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    let status = response.status().as_u16();
    metrics
        .duration
        .get_or_create(&RouteLabels { method: method.clone(), route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    metrics.requests.get_or_create(&HttpLabels { method, route, status }).inc();
    response
}
