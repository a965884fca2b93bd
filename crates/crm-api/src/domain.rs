//! Request bodies and the validated values they become.
//!
//! Raw bodies deserialise into `*Body` types (unknown fields rejected), then [`Validator`] turns them into values
//! whose invariants hold — a valid email, a known stage, a decimal string, a bounded text — collecting every field
//! error at once so the client can show them all. Nothing touches the database until a body has become a valid
//! value, so bad input changes nothing.

use crate::error::{ApiError, FieldError};
use chrono::{DateTime, SubsecRound, Utc};
use crm_mapping::PipelineStage;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Collects field errors while a body is checked.
#[derive(Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Runs a parser, records its error under `field`, and gives back the value when it parsed.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.error(field, message);
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`), as a PATCH needs.
pub fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

pub fn email(raw: &str) -> Result<String, String> {
    let email = raw.trim();
    let invalid = || "must be an email address such as name@example.com".to_owned();
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-') && !label.starts_with('-')
        });
    if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
        return Err(invalid());
    }
    Ok(email.to_owned())
}

/// A bounded free text; blank becomes `None`.
pub fn text(raw: Option<String>, max_chars: usize) -> Result<Option<String>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if trimmed.chars().any(|c| c == '\0') {
        return Err("must not contain NUL characters".into());
    }
    Ok(Some(trimmed.to_owned()))
}

pub fn stage(raw: &str) -> Result<PipelineStage, String> {
    raw.parse::<PipelineStage>().map_err(|e| e.to_string())
}

/// A non-negative decimal with at most 15 integer and 4 fractional digits, kept as the string given.
pub fn deal_value(raw: Option<String>) -> Result<Option<String>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let value = raw.trim();
    let message = || "must be a non-negative decimal string such as \"1250.00\"".to_owned();
    let (int, frac) = match value.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (value, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || int.len() > 15 || frac.is_some_and(|f| !digits(f) || f.len() > 4) {
        return Err(message());
    }
    // PostgreSQL's numeric spelling (no leading zeros, the scale kept), so the event built before the write shows
    // exactly what a later read returns.
    let int = match int.trim_start_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    Ok(Some(match frac {
        Some(frac) => format!("{int}.{frac}"),
        None => int.to_owned(),
    }))
}

pub fn currency(raw: Option<String>) -> Result<Option<String>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let code = raw.trim().to_ascii_uppercase();
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(Some(code))
    } else {
        Err("must be a three-letter ISO 4217 currency code such as EUR".into())
    }
}

pub fn timestamp(raw: Option<String>) -> Result<Option<DateTime<Utc>>, String> {
    let Some(raw) = raw else { return Ok(None) };
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| Some(t.with_timezone(&Utc).trunc_subsecs(6)))
        .map_err(|_| "must be an RFC 3339 timestamp such as 2026-11-01T09:30:00Z".into())
}

pub fn linkedin_url(raw: Option<String>) -> Result<Option<String>, String> {
    let Some(value) = text(raw, 2048)? else {
        return Ok(None);
    };
    match url::Url::parse(&value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(Some(value)),
        _ => Err("must be an http(s) URL".into()),
    }
}

/// Caps on a row's `custom_fields`, checked on every edit and on the merged result, so a row (and the event that
/// carries it with its previous values) stays far below the stream's message size limit however many edits pile
/// up. Together with the text caps a row's JSON is at most about 120 KiB.
pub mod custom_field_caps {
    /// Keys in the merged object.
    pub const MAX_KEYS: usize = 100;
    /// Characters in a key.
    pub const MAX_KEY_CHARS: usize = 100;
    /// Serialised bytes of one value.
    pub const MAX_VALUE_BYTES: usize = 4 * 1024;
    /// Serialised bytes of the whole (merged) object.
    pub const MAX_TOTAL_BYTES: usize = 16 * 1024;
}

/// Checks the `custom_fields` of an edit (a merge patch: `null` values remove keys) against the caps that do not
/// depend on the row; [`merged_custom_fields`] checks the result of the merge.
pub fn custom_fields(map: Map<String, Value>) -> Result<Map<String, Value>, String> {
    use custom_field_caps::*;
    if map.keys().any(|k| k.trim().is_empty() || k.chars().count() > MAX_KEY_CHARS) {
        return Err(format!("keys must be 1 to {MAX_KEY_CHARS} characters"));
    }
    if map.len() > MAX_KEYS {
        return Err(format!("must have at most {MAX_KEYS} keys"));
    }
    if let Some((key, _)) = map.iter().find(|(_, v)| json_len(v) > MAX_VALUE_BYTES) {
        return Err(format!("the value of `{key}` must serialise to at most {MAX_VALUE_BYTES} bytes"));
    }
    if json_len(&map) > MAX_TOTAL_BYTES {
        return Err(format!("must serialise to at most {MAX_TOTAL_BYTES} bytes"));
    }
    Ok(map)
}

/// Checks a row's `custom_fields` after an edit was merged into it.
pub fn merged_custom_fields(merged: &Map<String, Value>) -> Result<(), String> {
    use custom_field_caps::*;
    if merged.len() > MAX_KEYS {
        return Err(format!("would leave the row with {} keys; at most {MAX_KEYS} are allowed", merged.len()));
    }
    let size = json_len(merged);
    if size > MAX_TOTAL_BYTES {
        return Err(format!(
            "would leave the row's custom fields at {size} bytes; at most {MAX_TOTAL_BYTES} are allowed \
             (remove keys by setting them to null)"
        ));
    }
    Ok(())
}

fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    serde_json::to_vec(value).map(|v| v.len()).unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------------------------------------------------------
// The lead-interest upsert.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterestBody {
    pub lead: LeadBody,
    pub interest: InterestDetailBody,
    #[serde(default)]
    pub campaign: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadBody {
    pub email: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub job_title: Option<String>,
    #[serde(default)]
    pub linkedin_url: Option<String>,
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

/// Contact fields a lead may carry. On an existing row they only fill fields that are empty: a sales person's
/// edit in the sheet is never overwritten by an inbound pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contact {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub job_title: Option<String>,
    pub linkedin_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Interest {
    pub email: String,
    pub contact: Contact,
    pub kind: String,
    pub channel: Option<String>,
    pub message: Option<String>,
    /// When the interest happened; the request's time when not given.
    pub occurred_at: Option<DateTime<Utc>>,
    pub campaign: Option<String>,
}

impl InterestBody {
    pub fn validate(self) -> Result<Interest, ApiError> {
        let mut v = Validator::default();
        let email = v.check("lead.email", email(&self.lead.email));
        let contact = Contact {
            first_name: v.check("lead.first_name", text(self.lead.first_name, 200)).flatten(),
            last_name: v.check("lead.last_name", text(self.lead.last_name, 200)).flatten(),
            phone: v.check("lead.phone", text(self.lead.phone, 50)).flatten(),
            company: v.check("lead.company", text(self.lead.company, 200)).flatten(),
            job_title: v.check("lead.job_title", text(self.lead.job_title, 200)).flatten(),
            linkedin_url: v.check("lead.linkedin_url", linkedin_url(self.lead.linkedin_url)).flatten(),
        };
        let kind = v.check("interest.type", text(Some(self.interest.kind), 64)).flatten();
        if kind.is_none() && !v.errors.iter().any(|e| e.field == "interest.type") {
            v.error("interest.type", "must not be empty");
        }
        let channel = v.check("interest.channel", text(self.interest.channel, 64)).flatten();
        let message = v.check("interest.message", text(self.interest.message, 10_000)).flatten();
        let occurred_at = v.check("interest.occurred_at", timestamp(self.interest.occurred_at)).flatten();
        let campaign = v.check("campaign", text(self.campaign, 200)).flatten();
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

// ---------------------------------------------------------------------------------------------------------------
// The sheet's cell edit.

/// A PATCH body: every editable field, each absent (unchanged), `null` (cleared, where the field may be empty) or
/// a value. `custom_fields` merges (RFC 7386): a key set to `null` is removed, other keys are set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default, deserialize_with = "double_option")]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub company: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub job_title: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub linkedin_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub campaign: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub pipeline_stage: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub owner: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub deal_value: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub deal_currency: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub next_step_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub notes: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub custom_fields: Option<Option<Map<String, Value>>>,
}

/// A validated edit: `Some(v)` sets the field to `v` (which may be `None` for a clearable field).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowPatch {
    pub email: Option<String>,
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub company: Option<Option<String>>,
    pub job_title: Option<Option<String>>,
    pub linkedin_url: Option<Option<String>>,
    pub campaign: Option<Option<String>>,
    pub pipeline_stage: Option<PipelineStage>,
    pub owner: Option<Option<String>>,
    pub deal_value: Option<Option<String>>,
    pub deal_currency: Option<Option<String>>,
    pub next_step_at: Option<Option<DateTime<Utc>>>,
    pub notes: Option<Option<String>>,
    pub custom_fields: Option<Map<String, Value>>,
}

impl PatchBody {
    pub fn validate(self) -> Result<RowPatch, ApiError> {
        let mut v = Validator::default();
        let clearable = |v: &mut Validator, field: &str, raw: Option<Option<String>>, max: usize| {
            raw.and_then(|raw| v.check(field, text(raw, max)))
        };
        let patch = RowPatch {
            email: match self.email {
                None => None,
                Some(None) => {
                    v.error("email", "must not be null: a row always has an email");
                    None
                }
                Some(Some(raw)) => v.check("email", email(&raw)),
            },
            first_name: clearable(&mut v, "first_name", self.first_name, 200),
            last_name: clearable(&mut v, "last_name", self.last_name, 200),
            phone: clearable(&mut v, "phone", self.phone, 50),
            company: clearable(&mut v, "company", self.company, 200),
            job_title: clearable(&mut v, "job_title", self.job_title, 200),
            linkedin_url: self.linkedin_url.and_then(|raw| v.check("linkedin_url", linkedin_url(raw))),
            campaign: clearable(&mut v, "campaign", self.campaign, 200),
            pipeline_stage: match self.pipeline_stage {
                None => None,
                Some(None) => {
                    v.error("pipeline_stage", "must not be null");
                    None
                }
                Some(Some(raw)) => v.check("pipeline_stage", stage(&raw)),
            },
            owner: clearable(&mut v, "owner", self.owner, 200),
            deal_value: self.deal_value.and_then(|raw| v.check("deal_value", deal_value(raw))),
            deal_currency: self.deal_currency.and_then(|raw| v.check("deal_currency", currency(raw))),
            next_step_at: self.next_step_at.and_then(|raw| v.check("next_step_at", timestamp(raw))),
            notes: clearable(&mut v, "notes", self.notes, 10_000),
            custom_fields: match self.custom_fields {
                None => None,
                Some(None) => {
                    v.error("custom_fields", "must be an object; set a key to null to remove it");
                    None
                }
                Some(Some(map)) => v.check("custom_fields", custom_fields(map)),
            },
        };
        v.finish()?;
        Ok(patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for good in ["a@b.co", "First.Last+tag@sub.example.org", " ada@example.com "] {
            assert!(email(good).is_ok(), "{good}");
        }
        for bad in ["", "a", "a@b", "@b.co", "a@.co", "a@b..co", "a b@c.de", "a@b.co.", "a@-b.co", "a@b_c.co"] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deal_values_keep_their_scale_and_reject_floats_and_negatives() {
        assert_eq!(deal_value(Some("1250.00".into())), Ok(Some("1250.00".into())));
        assert_eq!(deal_value(Some("0".into())), Ok(Some("0".into())));
        assert_eq!(deal_value(Some("007.50".into())), Ok(Some("7.50".into())));
        assert_eq!(deal_value(Some("000".into())), Ok(Some("0".into())));
        for bad in ["-1", "1.", ".5", "1e3", "1,5", "12.34567", "abc", ""] {
            assert!(deal_value(Some(bad.into())).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_are_normalised() {
        assert_eq!(currency(Some("eur".into())), Ok(Some("EUR".into())));
        assert!(currency(Some("EURO".into())).is_err());
    }

    #[test]
    fn blank_text_is_none_and_long_text_is_refused() {
        assert_eq!(text(Some("  ".into()), 5), Ok(None));
        assert!(text(Some("abcdef".into()), 5).is_err());
    }

    #[test]
    fn patch_collects_every_bad_field() {
        let body: PatchBody = serde_json::from_value(serde_json::json!({
            "email": "nope", "pipeline_stage": "closed", "deal_value": "-3", "next_step_at": "tomorrow"
        }))
        .unwrap();
        let ApiError::Validation(errors) = body.validate().unwrap_err() else { panic!("expected validation") };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "pipeline_stage", "deal_value", "next_step_at"]);
    }

    #[test]
    fn custom_fields_are_capped_per_key_per_value_and_in_total() {
        use custom_field_caps::*;
        let map = |pairs: Vec<(String, Value)>| pairs.into_iter().collect::<Map<String, Value>>();
        assert!(custom_fields(map(vec![("tier".into(), "gold".into())])).is_ok());
        assert!(custom_fields(map(vec![("".into(), 1.into())])).is_err());
        assert!(custom_fields(map(vec![("k".repeat(MAX_KEY_CHARS + 1), 1.into())])).is_err());
        assert!(custom_fields(map(vec![("big".into(), "x".repeat(MAX_VALUE_BYTES).into())])).is_err());
        let many = (0..=MAX_KEYS).map(|i| (format!("k{i}"), Value::from(i))).collect();
        assert!(custom_fields(map(many)).is_err());
        let total = (0..5).map(|i| (format!("k{i}"), Value::from("x".repeat(4000)))).collect();
        assert!(custom_fields(map(total)).is_err());
        // Each edit fits, but the merged row would not.
        let merged = (0..5).map(|i| (format!("k{i}"), Value::from("x".repeat(4000)))).collect::<Map<_, _>>();
        assert!(merged_custom_fields(&merged).is_err());
        assert!(merged_custom_fields(&Map::new()).is_ok());
    }

    #[test]
    fn patch_tells_null_from_absent() {
        let body: PatchBody = serde_json::from_value(serde_json::json!({"owner": null})).unwrap();
        let patch = body.validate().unwrap();
        assert_eq!(patch.owner, Some(None));
        assert_eq!(patch.notes, None);
    }
}
