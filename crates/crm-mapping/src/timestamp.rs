//! Timestamps as rows show them: RFC 3339, UTC, `Z`, six fractional digits (`2026-11-01T09:30:00.000000Z`).
//!
//! Every event, response and webhook body carries several of them, so both directions have a fast path for that
//! one spelling and hand everything else to chrono:
//!
//! - [`format`] writes years 0 to 9999 into a 27-byte buffer on the stack instead of going through chrono's
//!   formatter and a `String` (a year outside that range, or a leap second, is formatted by chrono);
//! - [`parse`] reads `YYYY-MM-DDTHH:MM:SS[.f…]Z` with one to nine fractional digits by position, and passes any
//!   other input (an offset, a lower-case `t`, a leap second, an invalid date) to chrono's RFC 3339 parser, so
//!   what is accepted, and every error, is chrono's.
//!
//! Tests hold both fast paths to chrono's output, value for value.

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Timelike, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};
use std::fmt;

/// The length of `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
const LEN: usize = 27;

/// Formats a timestamp the way every row timestamp is shown: RFC 3339, UTC, `Z`, microseconds (truncated).
pub fn format(at: &DateTime<Utc>) -> String {
    let mut buf = [0u8; LEN];
    match canonical(at, &mut buf) {
        Some(text) => text.to_owned(),
        None => at.to_rfc3339_opts(SecondsFormat::Micros, true),
    }
}

/// Writes `at` into `buf` as [`format`] shows it; `None` (nothing written that counts) for a year outside 0 to
/// 9999 or a leap second, which chrono formats.
fn canonical<'b>(at: &DateTime<Utc>, buf: &'b mut [u8; LEN]) -> Option<&'b str> {
    let nanos = at.nanosecond();
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
    if nanos >= 1_000_000_000 {
        return None;
    }
    digits(&mut buf[0..4], year);
    buf[4] = b'-';
    digits(&mut buf[5..7], at.month());
    buf[7] = b'-';
    digits(&mut buf[8..10], at.day());
    buf[10] = b'T';
    digits(&mut buf[11..13], at.hour());
    buf[13] = b':';
    digits(&mut buf[14..16], at.minute());
    buf[16] = b':';
    digits(&mut buf[17..19], at.second());
    buf[19] = b'.';
    digits(&mut buf[20..26], nanos / 1_000);
    buf[26] = b'Z';
    std::str::from_utf8(buf).ok()
}

/// Writes `value` into `out` as decimal digits, zero-padded on the left to `out`'s length.
fn digits(out: &mut [u8], mut value: u32) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Parses an RFC 3339 timestamp into UTC, accepting exactly what chrono's `DateTime<Utc>` parser accepts.
pub fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match fast_parse(text.as_bytes()) {
        Some(at) => Ok(at),
        None => text.parse(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` with a valid date and a second below 60; `None` for anything else.
fn fast_parse(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() < 20 || b.last() != Some(&b'Z') {
        return None;
    }
    let at = |i: usize, c: u8| b[i] == c;
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            number(fraction)? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    let second = number(&b[17..19])?;
    if second >= 60 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(number(&b[0..4])? as i32, number(&b[5..7])?, number(&b[8..10])?)?;
    Some(date.and_hms_nano_opt(number(&b[11..13])?, number(&b[14..16])?, second, nanos)?.and_utc())
}

/// The decimal number `digits` spell; `None` when any is not a digit (at most nine, so it fits).
fn number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
}

/// `serialize_with` for a timestamp field: [`format`]'s spelling, written without an allocation.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; LEN];
    match canonical(at, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => s.serialize_str(&format(at)),
    }
}

/// `serialize_with` for an optional timestamp field: [`serialize`], or null.
pub fn serialize_opt<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serialize(at, s),
        None => s.serialize_none(),
    }
}

/// `deserialize_with` for a timestamp field: a string, read by [`parse`]; chrono's errors for anything it refuses.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    struct Rfc3339;
    impl Visitor<'_> for Rfc3339 {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<DateTime<Utc>, E> {
            parse(text).map_err(E::custom)
        }
    }
    d.deserialize_str(Rfc3339)
}

/// `deserialize_with` for an optional timestamp field (with `#[serde(default)]`, so a missing field is `None`).
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    #[derive(Deserialize)]
    struct Timestamp(#[serde(deserialize_with = "deserialize")] DateTime<Utc>);
    Ok(Option::<Timestamp>::deserialize(d)?.map(|t| t.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    /// Instants across the fast path's range and its edges, with every kind of fraction.
    fn instants() -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            // xorshift: a fixed, repeatable spread of seconds over years 0 to 9999, and of nanoseconds.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let seconds = (state % 315_537_897_600) as i64 - 62_167_219_200; // 0000-01-01 .. 9999-12-31
            let nanos = match state % 4 {
                0 => 0,
                1 => (state >> 20) as u32 % 1_000_000 * 1_000,
                _ => (state >> 20) as u32 % 1_000_000_000,
            };
            out.push(Utc.timestamp_opt(seconds, nanos).unwrap());
        }
        let edges = [
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap() + Duration::nanoseconds(999_999_999),
            Utc.with_ymd_and_hms(2024, 2, 29, 12, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
        ];
        out.extend(edges);
        out
    }

    #[test]
    fn format_writes_what_chrono_writes() {
        for at in instants() {
            assert_eq!(format(&at), at.to_rfc3339_opts(SecondsFormat::Micros, true), "{at:?}");
            let json = serde_json::to_value(Wrapped(at)).unwrap();
            assert_eq!(json, serde_json::Value::String(format(&at)));
        }
    }

    #[test]
    fn parse_reads_what_chrono_reads() {
        for at in instants() {
            for text in [
                at.to_rfc3339_opts(SecondsFormat::Micros, true),
                at.to_rfc3339_opts(SecondsFormat::Nanos, true),
                at.to_rfc3339_opts(SecondsFormat::Millis, true),
                at.to_rfc3339_opts(SecondsFormat::Secs, true),
                at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                serde_json::to_value(at).unwrap().as_str().unwrap().to_owned(),
            ] {
                assert_eq!(parse(&text).ok(), text.parse::<DateTime<Utc>>().ok(), "{text}");
            }
        }
    }

    #[test]
    fn what_the_fast_path_leaves_is_chronos_to_accept_or_refuse() {
        for text in [
            "2026-11-01T09:30:00.123456+02:00",
            "2026-11-01t09:30:00Z",
            "2026-11-01 09:30:00Z",
            "2026-11-01T09:30:00z",
            "2016-12-31T23:59:60Z",
            "2026-11-01T09:30:00.1234567891Z",
            "2026-11-01T09:30:00.Z",
            "2026-02-30T09:30:00Z",
            "2026-13-01T09:30:00Z",
            "2026-11-01T24:00:00Z",
            "2026-11-01T09:60:00Z",
            "2026-11-01T09:30:00",
            "2026-1-01T09:30:00.000Z",
            "+2026-11-01T09:30:00Z",
            "２０２６-11-01T09:30:00Z",
            "",
            "Z",
        ] {
            let ours = parse(text).map_err(|e| e.to_string());
            let chronos = text.parse::<DateTime<Utc>>().map_err(|e| e.to_string());
            assert_eq!(ours, chronos, "{text}");
        }
    }

    #[test]
    fn fields_deserialise_as_chrono_does_with_chronos_errors() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Row {
            #[serde(deserialize_with = "deserialize")]
            at: DateTime<Utc>,
            #[serde(default, deserialize_with = "deserialize_opt")]
            maybe: Option<DateTime<Utc>>,
        }
        #[derive(Debug, Deserialize, PartialEq)]
        struct ChronoRow {
            at: DateTime<Utc>,
            maybe: Option<DateTime<Utc>>,
        }
        for json in [
            r#"{"at": "2026-11-01T09:30:00.000001Z", "maybe": "2026-11-01T09:30:00.5+01:00"}"#,
            r#"{"at": "2026-11-01T09:30:00Z", "maybe": null}"#,
            r#"{"at": "2026-11-01T09:30:00Z"}"#,
            r#"{"at": "2026-02-30T09:30:00Z"}"#,
            r#"{"at": 17}"#,
            r#"{"at": "2026-11-01T09:30:00Z", "maybe": "soon"}"#,
        ] {
            let ours = serde_json::from_str::<Row>(json).map(|r| (r.at, r.maybe)).map_err(|e| e.to_string());
            let chronos = serde_json::from_str::<ChronoRow>(json).map(|r| (r.at, r.maybe)).map_err(|e| e.to_string());
            assert_eq!(ours, chronos, "{json}");
        }
    }

    #[derive(serde::Serialize)]
    struct Wrapped(#[serde(serialize_with = "serialize")] DateTime<Utc>);
}
