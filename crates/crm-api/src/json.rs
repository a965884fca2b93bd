//! Serialisation helpers shared by response types.

/// RFC 3339 UTC with microseconds, the same spelling as every row timestamp.
pub use crm_mapping::timestamp::serialize as timestamp;

/// [`timestamp`], or null.
pub use crm_mapping::timestamp::serialize_opt as opt_timestamp;
