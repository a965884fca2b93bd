//! crm-api against real PostgreSQL and NATS: every route, its success and its errors, and the outbox guarantees.

mod admin;
mod hardening;
mod health;
mod outbox;
mod recoveries;
mod retention;
mod rows;
mod settings;
mod statistics;
mod stats;
