//! crm-api: the REST API for CRM rows, webhook settings and the delivery log, and the outbox relay that publishes
//! every row change to JetStream. See docs/contract.md §2 for the routes and §3 for the events.
//!
//! A request meets, in order: [`routes`] (extract, authorise with [`auth`], call, map to a response), [`service`]
//! (what runs in which transaction), [`domain`] (the rules, no I/O) and [`repo`] (the SQL). [`relay`] moves
//! committed events to the stream; [`recovery`] re-queues bulk recoveries a batch at a time; [`retention`] prunes
//! the delivery log.

pub mod auth;
pub mod config;
pub mod console;
pub mod domain;
pub mod error;
pub mod extract;
pub mod json;
pub mod metrics;
pub mod pagination;
pub mod recovery;
pub mod relay;
pub mod repo;
pub mod retention;
pub mod routes;
pub mod service;
pub mod startup;
pub mod state;
pub mod statistics;

pub use config::ApiConfig;
pub use startup::Application;
