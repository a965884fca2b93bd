//! delivery-worker: consumes CRM row events from the durable pull consumer, builds and signs each webhook, sends
//! it through the egress-checked client, decides ack / NAK-with-delay / term, and records every attempt.

pub mod retry;
pub mod sender;
