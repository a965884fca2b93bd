//! The one definition of a CRM row's JSON, and of the outbound webhook payload built from it.
//!
//! A CRM row is one lead's line in the CRM sheet: the lead's contact fields joined with its CRM fields. The same
//! shape appears in every API response that shows a row, in the event snapshot on the stream, and in the outbound
//! webhook payload (docs/contract.md §2 and §4). [`row`] writes the row's type and its field list out once; the
//! API's SQL and request bodies, the schemas and the console's sheet are derived from them, so a receiver sees
//! exactly what the sheet shows and a field added there appears everywhere.
//!
//! The crate has no database or HTTP dependency: it is plain data and its serialisation.

pub mod columns;
pub mod payload;
pub mod row;
pub mod schema;
pub mod stage;
pub mod timestamp;
pub mod value;

pub use payload::{build_payload, PayloadSource, API_VERSION};
pub use row::{field, CrmRow, Field, Kind, SetFieldError, Writer, FIELDS, ROW_FIELDS};
pub use stage::PipelineStage;
pub use timestamp::format as format_timestamp;

/// Room for the JSON of a row, or of an event or webhook body carrying one (about a kilobyte): serialised into a
/// buffer this size, a row takes one allocation instead of a doubling from serde_json's 128 bytes.
const ROW_JSON_CAPACITY: usize = 2048;

/// `value` as JSON bytes, in one buffer sized for a row. For plain data with string keys, which cannot fail to
/// serialise; were it to fail, the bytes are empty, as with `serde_json::to_vec(..).unwrap_or_default()`.
pub fn json_bytes<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(ROW_JSON_CAPACITY);
    match serde_json::to_writer(&mut bytes, value) {
        Ok(()) => bytes,
        Err(_) => Vec::new(),
    }
}

impl CrmRow {
    /// The row as a JSON value, in the one shape every consumer sees.
    pub fn to_json(&self) -> serde_json::Value {
        // A row is plain data with string keys: serialising it cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    pub(crate) fn sample() -> CrmRow {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 9, 30, 0).unwrap();
        CrmRow {
            id: Uuid::nil(),
            workspace_id: Uuid::max(),
            version: 3,
            email: "ada@example.com".into(),
            first_name: Some("Ada".into()),
            last_name: None,
            phone: None,
            company: Some("Analytical Engines".into()),
            job_title: None,
            linkedin_url: None,
            campaign: Some("autumn".into()),
            interest_type: Some("positive_reply".into()),
            interest_channel: Some("email".into()),
            interest_message: Some("Sounds good".into()),
            interest_at: Some(at),
            interest_count: 2,
            pipeline_stage: PipelineStage::Qualified,
            owner: None,
            deal_value: Some("1250.00".into()),
            deal_currency: Some("EUR".into()),
            next_step_at: None,
            notes: None,
            custom_fields: serde_json::Map::new(),
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn json_has_every_field_in_column_order() {
        let text = serde_json::to_string(&sample()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = ROW_FIELDS.to_vec();
        expected.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, expected);
        // serde_json without preserve_order sorts keys; check the textual order instead.
        let positions: Vec<usize> = ROW_FIELDS.iter().map(|f| text.find(&format!("\"{f}\":")).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "fields out of column order: {text}");
    }

    /// A row with every optional field set, custom fields and a sub-microsecond timestamp.
    fn full() -> CrmRow {
        let mut row = sample();
        for field in FIELDS.iter().filter(|f| matches!(f.kind, Kind::Text { .. } | Kind::Url { .. })) {
            row.set(field.name, serde_json::json!(format!("https://x.example/{}", field.name))).unwrap();
        }
        row.next_step_at =
            Some(Utc.with_ymd_and_hms(2027, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::nanoseconds(1_500));
        row.custom_fields.insert("tier".into(), serde_json::json!({"level": 2, "tags": ["a"]}));
        row
    }

    #[test]
    fn one_field_shows_as_in_the_whole_row() {
        for row in [sample(), full()] {
            let whole = row.to_json();
            for field in FIELDS {
                assert_eq!(row.field(field.name).as_ref(), whole.get(field.name), "{}", field.name);
            }
        }
        assert_eq!(sample().field("no_such_field"), None);
    }

    #[test]
    fn changed_fields_are_the_fields_whose_json_differs() {
        let (a, b) = (sample(), full());
        let mut within_a_microsecond = b.clone();
        within_a_microsecond.next_step_at = b.next_step_at.map(|t| t + chrono::Duration::nanoseconds(100));
        let mut a_microsecond_later = b.clone();
        a_microsecond_later.next_step_at = b.next_step_at.map(|t| t + chrono::Duration::microseconds(1));
        let mut other_custom = b.clone();
        other_custom.custom_fields.insert("tier".into(), serde_json::json!({"level": 3, "tags": ["a"]}));
        for (x, y) in
            [(&a, &b), (&b, &a), (&a, &a), (&b, &within_a_microsecond), (&b, &a_microsecond_later), (&b, &other_custom)]
        {
            let (jx, jy) = (x.to_json(), y.to_json());
            let by_json: Vec<&str> =
                FIELDS.iter().filter(|f| jx.get(f.name) != jy.get(f.name)).map(|f| f.name).collect();
            let typed: Vec<&str> = x.changed_fields(y).map(|f| f.name).collect();
            assert_eq!(typed, by_json);
        }
        assert!(b.changed_fields(&within_a_microsecond).next().is_none());
        assert_eq!(b.changed_fields(&a_microsecond_later).map(|f| f.name).collect::<Vec<_>>(), ["next_step_at"]);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_micros_and_nulls_are_explicit() {
        let v = sample().to_json();
        assert_eq!(v["created_at"], "2026-11-01T09:30:00.000000Z");
        assert_eq!(v["interest_at"], "2026-11-01T09:30:00.000000Z");
        assert!(v["next_step_at"].is_null());
        assert_eq!(v["pipeline_stage"], "qualified");
        assert_eq!(v["deal_value"], "1250.00");
    }

    #[test]
    fn round_trips_through_json() {
        let row = sample();
        let back: CrmRow = serde_json::from_value(row.to_json()).unwrap();
        assert_eq!(back, row);
    }

    #[test]
    fn field_reads_one_value_by_name() {
        assert_eq!(sample().field("interest_count"), Some(serde_json::json!(2)));
        assert_eq!(sample().field("nope"), None);
    }
}
