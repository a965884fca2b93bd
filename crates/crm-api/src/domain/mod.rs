//! The rules of crm-api, without I/O: what a request may say and what it does to the data.
//!
//! Request bodies deserialise into `*Body` types (unknown fields rejected, with the path of each), then become
//! checked values whose invariants hold, every field error collected at once; nothing touches the database until
//! a body has become such a value, so bad input changes nothing. The row's fields are checked by the field list
//! of `crm-mapping`. The functions that apply a checked request to the data (a new row, the row after an interest
//! or an edit, the event of a change) are pure, so the services in [`crate::service`] only decide what runs in
//! which transaction.

pub mod admin;
pub mod change;
pub mod health;
pub mod ids;
pub mod input;
pub mod interest;
pub mod patch;
pub mod recovery;
pub mod replay;
pub mod settings;
pub mod stats;

pub use change::{etag, Change, IfMatch};
pub use interest::{Interest, InterestBody};
pub use patch::RowPatch;
