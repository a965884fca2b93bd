//! delivery-worker's metrics. Labels are closed sets (outcome, reason), each spelled by a type defined once, and
//! the per-endpoint gauges carry the workspace id (an id, for an operator to find a slow endpoint); none carries a
//! URL or a secret. Endpoints this worker has forgotten (idle for ten minutes) leave the per-endpoint gauges, so
//! their number stays that of the recently active endpoints.

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
    /// The endpoint already holds as much as it drains in a while (slow, hanging, paused or rate-limited): the
    /// message comes back after about as long as that backlog takes.
    Backlog,
    /// Another worker is sending this delivery right now.
    Leased,
    /// This worker is stopping.
    Shutdown,
}

impl HoldBack {
    pub const fn as_str(self) -> &'static str {
        match self {
            HoldBack::Backlog => "backlog",
            HoldBack::Leased => "leased",
            HoldBack::Shutdown => "shutdown",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    /// The workspace whose webhook the endpoint is: an id, never its URL.
    pub workspace_id: String,
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
    /// Messages handed back without an attempt, by reason: backlog, leased, shutdown.
    pub held_back: Family<ReasonLabel, Counter>,
    /// Messages acked without sending because the delivery had already ended (the send-log guard).
    pub duplicates_suppressed: Counter,
    pub in_flight: Gauge,
    /// Messages this worker holds: queued for their endpoint or in flight.
    pub buffered: Gauge,
    pub endpoints_paused: Gauge,
    /// Workers alive at the last heartbeat, this one included: what a webhook's rate cap is divided by.
    pub workers_alive: Gauge,
    /// Per endpoint (workspace), while this worker has it in mind: its concurrency limit, in flight, queued.
    pub endpoint_limit: Family<EndpointLabel, Gauge>,
    pub endpoint_in_flight: Family<EndpointLabel, Gauge>,
    pub endpoint_queued: Family<EndpointLabel, Gauge>,
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
            buffered: Gauge::default(),
            endpoints_paused: Gauge::default(),
            workers_alive: Gauge::default(),
            endpoint_limit: Family::default(),
            endpoint_in_flight: Family::default(),
            endpoint_queued: Family::default(),
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
            r.register("webhook_buffered", "Messages held by this process, queued or in flight", m.buffered.clone());
            r.register(
                "webhook_endpoint_concurrency_limit",
                "An endpoint's adaptive in-flight limit in this process",
                m.endpoint_limit.clone(),
            );
            r.register(
                "webhook_endpoint_in_flight",
                "An endpoint's deliveries in flight",
                m.endpoint_in_flight.clone(),
            );
            r.register(
                "webhook_endpoint_queued",
                "An endpoint's messages waiting in this process",
                m.endpoint_queued.clone(),
            );
            r.register(
                "webhook_endpoints_paused",
                "Endpoints paused after repeated failures",
                m.endpoints_paused.clone(),
            );
            r.register("webhook_workers_alive", "Workers alive, sharing each rate cap", m.workers_alive.clone());
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

    /// Shows the scheduler's endpoints, and forgets the ones it forgot.
    pub fn endpoints(&self, snapshot: &[crate::scheduler::EndpointSnapshot], forgotten: &[uuid::Uuid]) {
        let mut paused = 0;
        for e in snapshot {
            let label = EndpointLabel { workspace_id: e.endpoint.to_string() };
            self.endpoint_limit.get_or_create(&label).set(e.limit as i64);
            self.endpoint_in_flight.get_or_create(&label).set(e.in_flight as i64);
            self.endpoint_queued.get_or_create(&label).set(e.queued as i64);
            paused += i64::from(e.state == crate::scheduler::EndpointState::Paused);
        }
        for id in forgotten {
            let label = EndpointLabel { workspace_id: id.to_string() };
            self.endpoint_limit.remove(&label);
            self.endpoint_in_flight.remove(&label);
            self.endpoint_queued.remove(&label);
        }
        self.endpoints_paused.set(paused);
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
