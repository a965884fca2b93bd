//! Tools around the pipeline.
//!
//! - [`sink`]: the signature-verifying webhook receiver behind the `webhook-sink` binary, usable in-process by
//!   tests.
//! - [`stack`], [`load`], [`receiver`], [`ledger`]: the end-to-end benchmark (`crm-bench`) and the fault suite's
//!   machinery: the real services as processes, an open-model load generator, an in-process receiver, and the
//!   exact ledger of accepted, delivered, missing and duplicate events; [`search`] is `--find-max`'s rate search.

pub mod ledger;
pub mod load;
pub mod receiver;
pub mod scenario;
pub mod search;
pub mod sink;
pub mod stack;
