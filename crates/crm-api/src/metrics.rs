//! crm-api's metrics. Names follow Prometheus conventions (`_total` counters, `_seconds` histograms, base units);
//! labels are bounded and never carry a secret, a URL or an id.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use service_common::metrics::{latency_histogram, HttpMetrics, MetricsRegistry};

/// How a writer batch was written: the `path` of `crm_writer_batches_total` and `crm_writer_changes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    /// The one-statement write of a batch of interests as new leads, without reading first.
    Unread,
    /// The one-statement write, first try after reading.
    Statement,
    /// Its second try, after a concurrent writer changed a row it had read.
    StatementAgain,
    /// The transaction that locks the batch's rows.
    Locked,
    /// The batch failed as a whole; its changes were then written one by one, each counted by its own path.
    Failed,
}

impl WritePath {
    /// The paths a batch that was written can have taken.
    pub const WRITTEN: [WritePath; 4] =
        [WritePath::Unread, WritePath::Statement, WritePath::StatementAgain, WritePath::Locked];

    pub const fn as_str(self) -> &'static str {
        match self {
            WritePath::Unread => "unread",
            WritePath::Statement => "statement",
            WritePath::StatementAgain => "statement_again",
            WritePath::Locked => "locked",
            WritePath::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    pub path: &'static str,
}

/// The writers' batches (`crate::service::writer`) by [`WritePath`]. Many `statement_again` and `locked` batches
/// mean the writers keep meeting on the same rows.
#[derive(Clone, Default)]
pub struct WriterMetrics {
    pub batches: Family<PathLabel, Counter>,
    /// Changes in those batches, by the same paths.
    pub changes: Family<PathLabel, Counter>,
    /// Unread writes refused because a lead of theirs existed after all (the batch is then read and written).
    pub unread_misses: Counter,
}

impl WriterMetrics {
    /// Counts a batch of `changes` written by `path`.
    pub fn written(&self, path: WritePath, changes: usize) {
        let label = PathLabel { path: path.as_str() };
        self.batches.get_or_create(&label).inc();
        self.changes.get_or_create(&label).inc_by(changes as u64);
    }

    /// Counts an unread write refused because a lead of its batch existed.
    pub fn unread_missed(&self) {
        self.unread_misses.inc();
    }

    /// Batches written by `path` so far.
    pub fn batches(&self, path: WritePath) -> u64 {
        self.batches.get_or_create(&PathLabel { path: path.as_str() }).get()
    }

    /// Changes written by `path` so far.
    pub fn changes(&self, path: WritePath) -> u64 {
        self.changes.get_or_create(&PathLabel { path: path.as_str() }).get()
    }
}

#[derive(Clone)]
pub struct ApiMetrics {
    pub registry: MetricsRegistry,
    pub http: HttpMetrics,
    /// Events waiting in the outbox, sampled by the relay.
    pub outbox_backlog: Gauge,
    /// Events the relay published (stream acknowledged, including duplicates).
    pub outbox_published: Counter,
    /// Publishes the stream reported as duplicates (a republish after a relay crash).
    pub outbox_duplicates: Counter,
    /// Relay batches that failed and were retried.
    pub outbox_publish_errors: Counter,
    /// Time from an event's commit to the stream's acknowledgement.
    pub outbox_publish_latency: Histogram,
    /// Events the relay set aside because they cannot be published (see `outbox_parked`).
    pub outbox_parked_total: Counter,
    /// Events currently parked, sampled by the relay.
    pub outbox_parked: Gauge,
    /// Ended deliveries removed from the delivery log by retention (`CRM_DELIVERY_RETENTION_DAYS`).
    pub deliveries_pruned: Counter,
    /// Deliveries re-queued by bulk recoveries.
    pub deliveries_recovered: Counter,
    /// The writers' batches by how they were written.
    pub writer: WriterMetrics,
}

impl ApiMetrics {
    pub fn new() -> Self {
        let registry = MetricsRegistry::new();
        let http = HttpMetrics::register(&registry);
        let metrics = ApiMetrics {
            registry: registry.clone(),
            http,
            outbox_backlog: Gauge::default(),
            outbox_published: Counter::default(),
            outbox_duplicates: Counter::default(),
            outbox_publish_errors: Counter::default(),
            outbox_publish_latency: latency_histogram(),
            outbox_parked_total: Counter::default(),
            outbox_parked: Gauge::default(),
            deliveries_pruned: Counter::default(),
            deliveries_recovered: Counter::default(),
            writer: WriterMetrics::default(),
        };
        registry.with(|r| {
            r.register("crm_outbox_backlog", "Events committed but not yet published", metrics.outbox_backlog.clone());
            r.register("crm_outbox_published", "Events published to the stream", metrics.outbox_published.clone());
            r.register(
                "crm_outbox_duplicates",
                "Publishes the stream deduplicated by Nats-Msg-Id",
                metrics.outbox_duplicates.clone(),
            );
            r.register(
                "crm_outbox_publish_errors",
                "Relay batches that failed and will be retried",
                metrics.outbox_publish_errors.clone(),
            );
            r.register(
                "crm_outbox_parked_events",
                "Events set aside because they cannot be published (too large for the stream server)",
                metrics.outbox_parked_total.clone(),
            );
            r.register("crm_outbox_parked", "Events parked now, awaiting an operator", metrics.outbox_parked.clone());
            r.register(
                "crm_deliveries_pruned",
                "Ended deliveries removed from the delivery log by retention",
                metrics.deliveries_pruned.clone(),
            );
            r.register(
                "crm_deliveries_recovered",
                "Ended deliveries re-queued by bulk recoveries",
                metrics.deliveries_recovered.clone(),
            );
            r.register(
                "crm_writer_batches",
                "Writer batches by how they were written: unread, statement, statement_again, locked, failed",
                metrics.writer.batches.clone(),
            );
            r.register(
                "crm_writer_changes",
                "Row changes in writer batches, by how their batch was written",
                metrics.writer.changes.clone(),
            );
            r.register(
                "crm_writer_unread_misses",
                "Unread writes of new leads refused because a lead existed after all; the batch was then read",
                metrics.writer.unread_misses.clone(),
            );
            r.register(
                "crm_outbox_publish_latency_seconds",
                "Time from commit to stream acknowledgement",
                metrics.outbox_publish_latency.clone(),
            );
        });
        metrics
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}
