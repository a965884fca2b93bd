//! The one definition of a CRM row's JSON, and of the outbound webhook payload built from it.
//!
//! A CRM row is one lead's line in the CRM sheet: the lead's contact fields joined with its CRM fields. The same
//! shape appears in every API response that shows a row, in the event snapshot on the stream, and in the outbound
//! webhook payload (docs/contract.md §2 and §4). Keeping it in one crate means a field added here shows up everywhere at
//! once, and a receiver sees exactly what the sheet shows.
//!
//! The crate has no database or HTTP dependency: it is plain data and its serialisation.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

pub mod payload;
pub mod stage;

pub use payload::{build_payload, PayloadSource, API_VERSION};
pub use stage::PipelineStage;

/// One CRM row as the API, the sheet, the event and the webhook payload show it.
///
/// Field order is the column order of the sheet. Timestamps are RFC 3339 UTC with microsecond precision (the
/// precision PostgreSQL stores), so a row read back from the database serialises to the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    /// Starts at 1 and grows by one on every effective change. Receivers order updates by it.
    pub version: i64,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub job_title: Option<String>,
    pub linkedin_url: Option<String>,
    pub campaign: Option<String>,
    pub interest_type: Option<String>,
    pub interest_channel: Option<String>,
    pub interest_message: Option<String>,
    #[serde(serialize_with = "opt_rfc3339")]
    pub interest_at: Option<DateTime<Utc>>,
    pub interest_count: i64,
    pub pipeline_stage: PipelineStage,
    pub owner: Option<String>,
    /// A decimal string such as `"1250.00"`, never a float, so no cent is lost on the way.
    pub deal_value: Option<String>,
    /// ISO 4217 code, upper case.
    pub deal_currency: Option<String>,
    #[serde(serialize_with = "opt_rfc3339")]
    pub next_step_at: Option<DateTime<Utc>>,
    pub notes: Option<String>,
    /// Workspace-defined fields; always a JSON object.
    pub custom_fields: serde_json::Map<String, serde_json::Value>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// The names of every field of a row, in column order. The sheet uses it for its columns and the API for its
/// `changed_fields`.
pub const ROW_FIELDS: &[&str] = &[
    "id",
    "workspace_id",
    "version",
    "email",
    "first_name",
    "last_name",
    "phone",
    "company",
    "job_title",
    "linkedin_url",
    "campaign",
    "interest_type",
    "interest_channel",
    "interest_message",
    "interest_at",
    "interest_count",
    "pipeline_stage",
    "owner",
    "deal_value",
    "deal_currency",
    "next_step_at",
    "notes",
    "custom_fields",
    "created_at",
    "updated_at",
];

impl CrmRow {
    /// The row as a JSON value, in the one shape every consumer sees.
    pub fn to_json(&self) -> serde_json::Value {
        // A row is plain data with string keys: serialising it cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The value of one field by its JSON name, as it appears in [`CrmRow::to_json`].
    pub fn field(&self, name: &str) -> Option<serde_json::Value> {
        match self.to_json() {
            serde_json::Value::Object(mut map) => map.remove(name),
            _ => None,
        }
    }
}

/// Formats a timestamp the way every row timestamp is shown: RFC 3339, UTC, `Z`, microseconds.
pub fn format_timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn rfc3339<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_timestamp(at))
}

fn opt_rfc3339<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
