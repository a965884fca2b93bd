//! Serialisation helpers shared by response types.

use chrono::{DateTime, Utc};
use serde::Serializer;

/// RFC 3339 UTC with microseconds, the same spelling as every row timestamp.
pub fn timestamp<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crm_mapping::format_timestamp(at))
}

pub fn opt_timestamp<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => timestamp(at, s),
        None => s.serialize_none(),
    }
}
