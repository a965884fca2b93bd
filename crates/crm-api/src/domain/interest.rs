//! The lead-interest upsert of inbound pipelines: the request, and what it does to a lead's row.
//!
//! The lead is found by email, case-insensitively. A new lead gets a row at stage `new` with one interest; a known
//! lead's row gets the interest fields of this interest and its count goes up. The lead's contact fields (those
//! the field list marks [`Writer::Contact`](crm_mapping::Writer::Contact)) only fill fields that are empty: an
//! inbound pipeline never overwrites what a sales person typed. A given `campaign` replaces the current one.

use super::input::{email, field_value, text, timestamp, Validator};
use crate::error::ApiError;
use chrono::{DateTime, Utc};
use crm_mapping::{CrmRow, Field, Writer};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// The request body. `lead` is checked against the row's field list: `email` and the contact fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterestBody {
    pub lead: Map<String, Value>,
    pub interest: InterestDetailBody,
    #[serde(default)]
    pub campaign: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterestDetailBody {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub occurred_at: Option<String>,
}

/// A checked interest.
#[derive(Debug, Clone, PartialEq)]
pub struct Interest {
    pub email: String,
    /// The contact fields the lead carries, non-empty, in column order.
    pub contact: Vec<(&'static Field, Value)>,
    pub kind: String,
    pub channel: Option<String>,
    pub message: Option<String>,
    /// When the interest happened; the request's time when not given.
    pub occurred_at: Option<DateTime<Utc>>,
    pub campaign: Option<String>,
}

/// The longest value the row field `name` takes.
fn cap(name: &str) -> usize {
    crm_mapping::field(name).and_then(Field::max_chars).unwrap_or(200)
}

impl InterestBody {
    pub fn validate(self) -> Result<Interest, ApiError> {
        let mut v = Validator::default();
        let mut lead = self.lead;
        let email = match lead.remove("email") {
            Some(Value::String(raw)) => v.check("lead.email", email(&raw)),
            Some(_) => {
                v.error("lead.email", "must be a string");
                None
            }
            None => {
                v.error("lead.email", "is required");
                None
            }
        };
        let mut contact = Vec::new();
        for field in crm_mapping::FIELDS.iter().filter(|f| f.writer == Writer::Contact) {
            let Some(raw) = lead.remove(field.name) else { continue };
            let name = format!("lead.{}", field.name);
            match v.check(&name, field_value(field, raw)) {
                Some(Value::Null) | None => {}
                Some(value) => contact.push((field, value)),
            }
        }
        for name in lead.keys() {
            v.error(format!("lead.{name}"), "unknown field");
        }
        let detail = self.interest;
        let kind = v.check("interest.type", text(Some(detail.kind), cap("interest_type"))).flatten();
        if kind.is_none() && !v.has_error("interest.type") {
            v.error("interest.type", "must not be empty");
        }
        let channel = v.check("interest.channel", text(detail.channel, cap("interest_channel"))).flatten();
        let message = v.check("interest.message", text(detail.message, cap("interest_message"))).flatten();
        let occurred_at = v.check("interest.occurred_at", timestamp(detail.occurred_at)).flatten();
        let campaign = v.check("campaign", text(self.campaign, cap("campaign"))).flatten();
        v.finish()?;
        Ok(Interest {
            email: email.unwrap_or_default(),
            contact,
            kind: kind.unwrap_or_default(),
            channel,
            message,
            occurred_at,
            campaign,
        })
    }
}

impl Interest {
    /// A new lead's first row: stage `new`, this interest counted once, the contact fields given.
    pub fn new_row(&self, workspace_id: Uuid, now: DateTime<Utc>) -> CrmRow {
        let mut row = CrmRow::blank(Uuid::now_v7(), workspace_id, self.email.clone(), now);
        for (field, value) in &self.contact {
            // Checked against the field's kind, which is what its Rust type holds.
            let _ = row.set(field.name, value.clone());
        }
        self.record_on(&mut row, now);
        row.interest_count = 1;
        row
    }

    /// A known lead's row after this interest: the interest fields set and counted; contact fields only fill empty
    /// ones; a given campaign replaces the current one.
    pub fn next_row(&self, before: &CrmRow, now: DateTime<Utc>) -> CrmRow {
        let mut row = before.clone();
        for (field, value) in &self.contact {
            if before.field(field.name).is_none_or(|current| current.is_null()) {
                let _ = row.set(field.name, value.clone());
            }
        }
        self.record_on(&mut row, now);
        row.interest_count = before.interest_count + 1;
        row.version = before.version + 1;
        row.updated_at = now;
        row
    }

    fn record_on(&self, row: &mut CrmRow, now: DateTime<Utc>) {
        if self.campaign.is_some() {
            row.campaign = self.campaign.clone();
        }
        row.interest_type = Some(self.kind.clone());
        row.interest_channel = self.channel.clone();
        row.interest_message = self.message.clone();
        row.interest_at = Some(self.occurred_at.unwrap_or(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_mapping::PipelineStage;

    fn body(json: Value) -> Result<Interest, ApiError> {
        serde_json::from_value::<InterestBody>(json).expect("the body's shape").validate()
    }

    fn fields(err: ApiError) -> Vec<String> {
        match err {
            ApiError::Validation(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected validation, got {other:?}"),
        }
    }

    #[test]
    fn lead_fields_come_from_the_field_list() {
        let err = body(serde_json::json!({
            "lead": {"email": "x", "phone": "1".repeat(51), "notes": "no", "nickname": "Ada"},
            "interest": {"type": " "}
        }))
        .unwrap_err();
        assert_eq!(fields(err), ["lead.email", "lead.phone", "lead.nickname", "lead.notes", "interest.type"]);
        let err = body(serde_json::json!({"lead": {}, "interest": {"type": "reply"}})).unwrap_err();
        assert_eq!(fields(err), ["lead.email"]);
    }

    #[test]
    fn a_new_lead_and_a_known_one() {
        let ok = body(serde_json::json!({
            "lead": {"email": "Ada@Example.com", "first_name": " Ada ", "company": ""},
            "interest": {"type": "positive_reply", "channel": "email"},
            "campaign": "autumn"
        }))
        .unwrap();
        let now = Utc::now();
        let first = ok.new_row(Uuid::now_v7(), now);
        assert_eq!((first.version, first.interest_count, first.pipeline_stage), (1, 1, PipelineStage::New));
        assert_eq!((first.first_name.as_deref(), first.company.as_deref()), (Some("Ada"), None));
        assert_eq!((first.campaign.as_deref(), first.interest_at), (Some("autumn"), Some(now)));

        let mut edited = first.clone();
        edited.first_name = Some("Augusta".into());
        let again = body(serde_json::json!({
            "lead": {"email": "ada@example.com", "first_name": "Ada", "company": "Engines"},
            "interest": {"type": "meeting_request"}
        }))
        .unwrap();
        let second = again.next_row(&edited, now);
        assert_eq!((second.version, second.interest_count), (2, 2));
        assert_eq!(second.first_name.as_deref(), Some("Augusta"), "a pipeline never overwrites an edit");
        assert_eq!(second.company.as_deref(), Some("Engines"), "an empty contact field is filled");
        assert_eq!(second.campaign.as_deref(), Some("autumn"), "no campaign given keeps the current one");
        assert_eq!(second.interest_channel, None, "the interest fields describe the latest interest");
    }
}
