//! Tools.
//!
//! - [`sink`]: the signature-verifying webhook receiver behind the `webhook-sink` binary, usable in-process by
//!   tests.

pub mod sink;
