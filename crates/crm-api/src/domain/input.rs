//! Checking what a request says: each parser turns raw input into a value whose invariants hold (a valid email, a
//! known stage, a bounded text) or says what is wrong, and [`Validator`] collects every field's error at once so a
//! client can show them all. The row's own fields are checked by their [`Kind`], so the field list in
//! `crm-mapping` decides what a field accepts.

use crate::error::{ApiError, FieldError};
use chrono::{DateTime, SubsecRound, Utc};
use crm_mapping::{Field, Kind, PipelineStage};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Collects field errors while a request is checked.
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

    /// Whether an error was recorded for `field` already.
    pub fn has_error(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
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

/// A required, bounded, non-blank text (a name).
pub fn name(raw: String, max_chars: usize) -> Result<String, String> {
    text(Some(raw), max_chars)?.ok_or_else(|| "must not be empty".to_owned())
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
        rest => rest,
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
        Err("must be a three-letter ISO 4217 code such as EUR".into())
    }
}

/// An RFC 3339 timestamp, kept to the microsecond (what PostgreSQL stores).
pub fn timestamp(raw: Option<String>) -> Result<Option<DateTime<Utc>>, String> {
    let Some(raw) = raw else { return Ok(None) };
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| Some(t.with_timezone(&Utc).trunc_subsecs(6)))
        .map_err(|_| "must be an RFC 3339 timestamp such as 2026-11-01T09:30:00Z".into())
}

/// A bounded `http(s)` URL; blank becomes `None`.
pub fn http_url(raw: Option<String>, max_chars: usize) -> Result<Option<String>, String> {
    let Some(value) = text(raw, max_chars)? else {
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

/// A request's value for one of the row's fields, checked by the field's kind and put in the row's own JSON
/// spelling (trimmed text, blank as null, a timestamp to the microsecond, a currency upper case). For an
/// [`Kind::Object`] field the value is the merge patch itself.
pub fn field_value(field: &Field, raw: Value) -> Result<Value, String> {
    if raw.is_null() {
        return if field.nullable {
            Ok(Value::Null)
        } else if field.kind == Kind::Object {
            Err("must be an object; set a key to null to remove it".into())
        } else {
            Err("must not be null".into())
        };
    }
    let string = |raw: Value| match raw {
        Value::String(s) => Ok(s),
        _ => Err("must be a string".to_owned()),
    };
    let nullable = |value: Option<String>| value.map_or(Value::Null, Value::String);
    Ok(match field.kind {
        Kind::Text { max_chars } => match text(Some(string(raw)?), max_chars)? {
            Some(value) => Value::String(value),
            None if field.nullable => Value::Null,
            None => return Err("must not be empty".into()),
        },
        Kind::Email => Value::String(email(&string(raw)?)?),
        Kind::Url { max_chars } => nullable(http_url(Some(string(raw)?), max_chars)?),
        Kind::Stage => Value::String(stage(&string(raw)?)?.as_str().to_owned()),
        Kind::Decimal => nullable(deal_value(Some(string(raw)?))?),
        Kind::Currency => nullable(currency(Some(string(raw)?))?),
        Kind::Timestamp => nullable(timestamp(Some(string(raw)?))?.map(|at| crm_mapping::format_timestamp(&at))),
        Kind::Object => match raw {
            Value::Object(map) => Value::Object(custom_fields(map)?),
            _ => return Err("must be an object; set a key to null to remove it".into()),
        },
        Kind::Uuid | Kind::Integer { .. } => return Err("is not editable".into()),
    })
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
        assert_eq!(name("  ".into(), 5), Err("must not be empty".into()));
    }

    #[test]
    fn field_values_follow_their_kind() {
        let f = |name| crm_mapping::field(name).expect("a row field");
        assert_eq!(field_value(f("first_name"), " Ada ".into()), Ok("Ada".into()));
        assert_eq!(field_value(f("first_name"), " ".into()), Ok(Value::Null));
        assert_eq!(field_value(f("first_name"), Value::Null), Ok(Value::Null));
        assert!(field_value(f("first_name"), 5.into()).is_err());
        assert!(field_value(f("email"), Value::Null).is_err());
        assert!(field_value(f("pipeline_stage"), Value::Null).is_err());
        assert_eq!(field_value(f("pipeline_stage"), "won".into()), Ok("won".into()));
        assert_eq!(field_value(f("deal_currency"), "eur".into()), Ok("EUR".into()));
        assert_eq!(
            field_value(f("next_step_at"), "2026-11-01T10:30:00+01:00".into()),
            Ok("2026-11-01T09:30:00.000000Z".into())
        );
        assert!(field_value(f("custom_fields"), Value::Null).is_err());
        assert!(field_value(f("linkedin_url"), "ftp://x".into()).is_err());
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
}
