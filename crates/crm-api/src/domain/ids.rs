//! Time as id bounds. Every id this service creates is a UUIDv7, whose first 48 bits are its creation time in
//! Unix milliseconds, so "created at or after T" is "id ≥ the least id of T's millisecond": a time window over the
//! delivery log becomes an id range that the `(workspace_id, id)` and `(workspace_id, status, id)` indexes serve.
//! PostgreSQL orders `uuid` by its bytes, which is the order these bounds assume.

use chrono::{DateTime, Utc};
use uuid::Uuid;

fn bound(at: DateTime<Utc>, fill: u8) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0).min((1 << 48) - 1);
    let mut bytes = [fill; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// The least id a UUIDv7 created in `at`'s millisecond can have: ids created at or after `at` (to the
/// millisecond) are `>=` it.
pub fn first_id_at(at: DateTime<Utc>) -> Uuid {
    bound(at, 0x00)
}

/// The greatest id a UUIDv7 created in `at`'s millisecond can have: ids created at or before `at` are `<=` it.
pub fn last_id_at(at: DateTime<Utc>) -> Uuid {
    bound(at, 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn v7_at(at: DateTime<Utc>) -> Uuid {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            u64::try_from(at.timestamp()).unwrap(),
            at.timestamp_subsec_nanos(),
        );
        Uuid::new_v7(ts)
    }

    #[test]
    fn ids_of_a_millisecond_lie_between_its_bounds_and_outside_its_neighbours() {
        let at = Utc::now();
        for _ in 0..100 {
            let id = v7_at(at);
            assert!(first_id_at(at) <= id && id <= last_id_at(at));
            assert!(id < first_id_at(at + Duration::milliseconds(1)));
            assert!(last_id_at(at - Duration::milliseconds(1)) < id);
        }
        // Byte order is what PostgreSQL compares, and what Uuid's Ord compares.
        assert!(first_id_at(at).as_bytes() < last_id_at(at).as_bytes());
    }
}
