//! What each API request does to the data, and what commits together: the services the routes call. They take
//! checked values from [`crate::domain`], apply its rules, and decide transactions, idempotency and optimistic
//! retries; the SQL is [`crate::repo`]'s.

pub mod admin;
pub mod deliveries;
pub mod endpoint;
pub mod recoveries;
pub mod rows;
pub mod settings;
pub mod writer;
