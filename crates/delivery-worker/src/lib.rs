//! delivery-worker: consumes CRM row events from the durable pull consumer, builds and signs each webhook, sends
//! it through the egress-checked client, decides ack / NAK-with-delay / term, and records every attempt.
//!
//! Modules, in the order a message meets them: [`consumer`] pulls, [`scheduler`] decides which delivery runs next
//! (work-conserving, fair between workspaces, an adaptive limit per endpoint), [`process`] runs the steps of a
//! delivery and answers, with [`settings`] (cached webhook settings and signers), [`store`] (the delivery log and
//! its send-log guard), [`request`] (the signed request), [`sender`] (the SSRF-safe HTTP client) and [`retry`]
//! (the decision matrix and backoff schedule); [`presence`] tells the others and crm-api what this worker sees, and
//! [`resume`] hears when an operator resumes an endpoint.

pub mod config;
pub mod consumer;
pub mod metrics;
pub mod presence;
pub mod process;
pub mod request;
pub mod resume;
pub mod retry;
pub mod scheduler;
pub mod sender;
pub mod settings;
pub mod startup;
pub mod store;

pub use config::WorkerConfig;
pub use startup::{Worker, WorkerOptions};
