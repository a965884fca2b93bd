//! delivery-worker's metrics. Labels are closed sets (outcome, reason), each spelled by a type defined once; none
//! carries a URL or a secret.

use crm_db::DeliveryStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use service_common::metrics::{latency_histogram, HttpMetrics, MetricsRegistry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Why a message went back to JetStream without an attempt (the `reason` of `webhook_held_back_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldBack {
    /// The workspace had as many deliveries in flight as it may.
    WorkspaceLimit,
    /// The endpoint is paused after repeated failures.
    EndpointPaused,
    /// Another worker is sending this delivery right now.
    Leased,
    /// This worker is stopping.
    Shutdown,
}

impl HoldBack {
    pub const fn as_str(self) -> &'static str {
        match self {
            HoldBack::WorkspaceLimit => "workspace_limit",
            HoldBack::EndpointPaused => "endpoint_paused",
            HoldBack::Leased => "leased",
            HoldBack::Shutdown => "shutdown",
        }
    }
}

#[derive(Clone)]
pub struct WorkerMetrics {
    pub registry: MetricsRegistry,
    pub http: HttpMetrics,
    /// Attempts and skips by outcome: succeeded, retrying, failed, dead, skipped.
    pub deliveries: Family<OutcomeLabel, Counter>,
    /// Time of each HTTP attempt, by outcome.
    pub attempt_duration: Family<OutcomeLabel, Histogram>,
    /// NAKs with a backoff delay.
    pub retries_scheduled: Counter,
    /// Messages handed back without an attempt, by reason: workspace_limit, endpoint_paused, leased, shutdown.
    pub held_back: Family<ReasonLabel, Counter>,
    /// Messages acked without sending because the delivery had already ended (the send-log guard).
    pub duplicates_suppressed: Counter,
    pub in_flight: Gauge,
    pub endpoints_paused: Gauge,
    pub consumer_pending: Gauge,
    pub consumer_ack_pending: Gauge,
}

impl WorkerMetrics {
    pub fn new() -> Self {
        let registry = MetricsRegistry::new();
        let http = HttpMetrics::register(&registry);
        let m = WorkerMetrics {
            registry: registry.clone(),
            http,
            deliveries: Family::default(),
            attempt_duration: Family::new_with_constructor(latency_histogram),
            retries_scheduled: Counter::default(),
            held_back: Family::default(),
            duplicates_suppressed: Counter::default(),
            in_flight: Gauge::default(),
            endpoints_paused: Gauge::default(),
            consumer_pending: Gauge::default(),
            consumer_ack_pending: Gauge::default(),
        };
        registry.with(|r| {
            r.register("webhook_deliveries", "Webhook attempts and skips by outcome", m.deliveries.clone());
            r.register(
                "webhook_attempt_duration_seconds",
                "Webhook request duration by outcome",
                m.attempt_duration.clone(),
            );
            r.register("webhook_retries_scheduled", "Retries scheduled with a NAK delay", m.retries_scheduled.clone());
            r.register("webhook_held_back", "Messages handed back without an attempt", m.held_back.clone());
            r.register(
                "webhook_duplicates_suppressed",
                "Messages acked unsent because their delivery had ended",
                m.duplicates_suppressed.clone(),
            );
            r.register("webhook_in_flight", "Deliveries in flight in this process", m.in_flight.clone());
            r.register(
                "webhook_endpoints_paused",
                "Endpoints paused after repeated failures",
                m.endpoints_paused.clone(),
            );
            r.register(
                "jetstream_consumer_pending",
                "Messages not yet delivered to the consumer",
                m.consumer_pending.clone(),
            );
            r.register(
                "jetstream_consumer_ack_pending",
                "Messages delivered but not yet acknowledged (includes NAK delays)",
                m.consumer_ack_pending.clone(),
            );
        });
        m
    }

    /// Counts an attempt or a skip by where it left the delivery.
    pub fn count(&self, outcome: DeliveryStatus) {
        self.deliveries.get_or_create(&OutcomeLabel { outcome: outcome.as_str() }).inc();
    }

    /// Records how long an attempt took, by where it left the delivery.
    pub fn observe_attempt(&self, outcome: DeliveryStatus, duration: std::time::Duration) {
        self.attempt_duration
            .get_or_create(&OutcomeLabel { outcome: outcome.as_str() })
            .observe(duration.as_secs_f64());
    }

    pub fn hold_back(&self, reason: HoldBack) {
        self.held_back.get_or_create(&ReasonLabel { reason: reason.as_str() }).inc();
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
