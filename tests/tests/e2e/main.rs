//! The whole pipeline against real PostgreSQL and NATS: crm-api, delivery-worker(s) and a test receiver.

mod dedupe;
mod delivery;
mod endpoint;
mod fairness;
mod recording;
mod recovery;
mod retries;
mod scale;
mod scheduling;
