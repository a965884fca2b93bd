//! delivery-worker: consumes CRM row events from the durable pull consumer, builds and signs each webhook, sends
//! it through the egress-checked client, decides ack / NAK-with-delay / term, and records every attempt.
//!
//! Modules, in the order a message meets them: [`consumer`] pulls, [`process`] runs the steps of a delivery and
//! answers, with [`settings`] (cached webhook settings and signers), [`fairness`] (per-workspace limits, endpoint
//! pauses), [`store`] (the delivery log and its send-log guard), [`request`] (the signed request), [`sender`] (the
//! SSRF-safe HTTP client) and [`retry`] (the decision matrix and backoff schedule).

pub mod config;
pub mod consumer;
pub mod fairness;
pub mod metrics;
pub mod process;
pub mod request;
pub mod retry;
pub mod sender;
pub mod settings;
pub mod startup;
pub mod store;

pub use config::WorkerConfig;
pub use startup::{Worker, WorkerOptions};
