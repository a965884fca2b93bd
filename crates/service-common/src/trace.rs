//! W3C trace context across process boundaries: the current span's context into message headers (the outbox row,
//! then the NATS message), and a parent for a span from such headers or from an incoming HTTP request's. Both
//! need the OpenTelemetry layer that [`crate::telemetry`] installs whether or not spans are exported; without it
//! (or without an active trace) they are no-ops: nothing is injected, and a span without a remote parent starts
//! its own trace.

use opentelemetry::propagation::{Extractor, Injector};
use std::collections::BTreeMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct MapInjector<'a>(&'a mut BTreeMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// The trace-context headers found, as (name, value) pairs.
struct Pairs(Vec<(&'static str, String)>);

impl Extractor for Pairs {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

/// The current span's trace context as headers (`traceparent`, maybe `tracestate`); empty without a trace.
pub fn current_headers() -> BTreeMap<String, String> {
    let cx = tracing::Span::current().context();
    let mut headers = BTreeMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut MapInjector(&mut headers)));
    headers
}

/// Makes `span` a child of the trace context found through `get` (header lookup), if there is one.
pub fn set_parent(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    let found = Pairs(["traceparent", "tracestate"].into_iter().filter_map(|k| get(k).map(|v| (k, v))).collect());
    if found.0.is_empty() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&found));
    let _ = span.set_parent(cx);
}

/// [`set_parent`] from an HTTP request's headers, so a caller's trace continues through this service (a header
/// that is not visible ASCII is ignored, as is a malformed `traceparent`).
pub fn set_parent_from_http(span: &tracing::Span, headers: &http::HeaderMap) {
    set_parent(span, |k| headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned));
}
