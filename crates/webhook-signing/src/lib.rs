//! Signing and verification of outbound webhooks.
//!
//! This crate owns the cryptographic contract of our outbound webhooks: how an
//! HMAC key is derived from a webhook secret, how the signature headers of one
//! delivery are computed (including during a secret rotation), and how a
//! receiver verifies them. It does no I/O and holds no randomness; callers
//! supply the current time and random bytes.
//!
//! Every delivery carries two independent signature schemes over the same raw
//! body, both HMAC-SHA256 with the same key:
//!
//! 1. **The crm scheme** (our own, simple to verify by hand):
//!    - [`CRM_TIMESTAMP_HEADER`] (`x-crm-webhook-timestamp`): Unix seconds at
//!      send time;
//!    - [`CRM_SIGNATURE_HEADER`] (`x-crm-webhook-signature`): `sha256=` followed
//!      by the lowercase hex of `HMAC-SHA256(key, "<timestamp>.<raw body>")`.
//! 2. **Standard Webhooks** (<https://www.standardwebhooks.com/>), so that
//!    receivers can verify with the public `standardwebhooks` (or svix)
//!    libraries:
//!    - [`STANDARD_ID_HEADER`] (`webhook-id`): the unique message id;
//!    - [`STANDARD_TIMESTAMP_HEADER`] (`webhook-timestamp`): Unix seconds;
//!    - [`STANDARD_SIGNATURE_HEADER`] (`webhook-signature`): `v1,` followed by
//!      the standard, padded base64 of
//!      `HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")`.
//!
//! **Key derivation** ([`SigningKey::from_secret`]): for a secret of the form
//! `whsec_<base64>` the key is the base64-decoded remainder (as in Standard
//! Webhooks); for any other secret the key is the secret's UTF-8 bytes.
//!
//! **Rotation**: a [`Signer`] may hold several keys (new key first). Each
//! signature header then carries one signature per key, space-separated, and a
//! [`Verifier`] accepts a delivery if *any* signature in the header matches
//! *any* of its keys. Tokens of an unknown form (for example a `v2,…` token in
//! the Standard Webhooks header) are ignored.
//!
//! Verification compares MACs in constant time (via [`hmac::Mac::verify_slice`])
//! and rejects timestamps further than a caller-chosen tolerance from `now`.
//!
//! ```
//! use webhook_signing::{Signer, SigningKey, Verifier};
//!
//! let secret = webhook_signing::generate_secret([42; 24]); // use real randomness
//! let signer = Signer::new(vec![SigningKey::from_secret(&secret)?])?;
//! let (id, ts, body) = ("msg_1", 1_700_000_000, br#"{"ok":true}"#.as_slice());
//! let headers = signer.sign(id, ts, body);
//!
//! let verifier = Verifier::from_secret(&secret)?;
//! let ts_header = ts.to_string();
//! verifier.verify_crm(&ts_header, &headers.crm_signature, body, ts, 300)?;
//! verifier.verify_standard(id, &ts_header, &headers.standard_signature, body, ts, 300)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

mod headers;

pub use headers::{request_headers, RequestFacts, CRM_ATTEMPT_HEADER, CRM_EVENT_HEADER, CRM_ID_HEADER, USER_AGENT};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the send time (Unix seconds) for the crm scheme.
pub const CRM_TIMESTAMP_HEADER: &str = "x-crm-webhook-timestamp";
/// Header carrying the crm-scheme signature(s): `sha256=<hex>[ sha256=<hex>…]`.
pub const CRM_SIGNATURE_HEADER: &str = "x-crm-webhook-signature";
/// Standard Webhooks message id header.
pub const STANDARD_ID_HEADER: &str = "webhook-id";
/// Standard Webhooks timestamp header (Unix seconds).
pub const STANDARD_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Standard Webhooks signature header: `v1,<base64>[ v1,<base64>…]`.
pub const STANDARD_SIGNATURE_HEADER: &str = "webhook-signature";

/// Prefix of secrets whose remainder is the base64-encoded key.
pub const SECRET_PREFIX: &str = "whsec_";
/// The shortest key a new secret may give: 16 bytes (128 bits). Standard Webhooks uses 24 to 64; a `whsec_AA==`
/// would otherwise sign with a 1-byte key. Checked where secrets are saved ([`key_len`]); keys already stored
/// still sign, so tightening the rule never silently stops a running webhook.
pub const MIN_KEY_BYTES: usize = 16;
/// Prefix of each token in the crm signature header.
const CRM_SIGNATURE_PREFIX: &str = "sha256=";
/// Version prefix of each supported token in the Standard Webhooks header.
const STANDARD_SIGNATURE_VERSION: &str = "v1";

/// Errors deriving keys or building a [`Signer`]. Messages never include the
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The secret is empty (or `whsec_` with nothing after it).
    #[error("webhook secret is empty")]
    EmptySecret,
    /// The secret starts with `whsec_` but the remainder is not valid base64.
    #[error("webhook secret has the whsec_ prefix but its remainder is not valid base64")]
    InvalidBase64,
    /// The HMAC implementation rejected the key (cannot happen for HMAC-SHA256,
    /// which accepts keys of any length; kept so no code path panics).
    #[error("webhook secret could not be used as an HMAC key")]
    InvalidKey,
    /// A [`Signer`] needs at least one key.
    #[error("no signing keys configured")]
    NoKeys,
}

/// Reasons a webhook delivery fails verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header is missing or empty; carries the header name.
    #[error("missing or empty header {0}")]
    MissingHeader(&'static str),
    /// The timestamp header is not a canonical decimal integer.
    #[error("timestamp header is not a valid integer")]
    BadTimestamp,
    /// The timestamp is further from `now` than the allowed tolerance.
    #[error("timestamp is outside the allowed tolerance")]
    TimestampOutOfTolerance,
    /// No supported signature in the header matches any of the verifier's keys.
    #[error("no matching signature found")]
    NoMatchingSignature,
}

/// The length in bytes of the HMAC key a secret gives (see [`SigningKey::from_secret`]), or why it gives none.
pub fn key_len(secret: &str) -> Result<usize, KeyError> {
    let len = match secret.strip_prefix(SECRET_PREFIX) {
        Some(encoded) => BASE64.decode(encoded).map_err(|_| KeyError::InvalidBase64)?.len(),
        None => secret.len(),
    };
    if len == 0 {
        return Err(KeyError::EmptySecret);
    }
    Ok(len)
}

/// HMAC key derived from a webhook secret.
///
/// Its [`Debug`] output is always `SigningKey(***)`; the key bytes are never
/// printed.
#[derive(Clone)]
pub struct SigningKey {
    /// HMAC state keyed with the derived key bytes, cloned for each message.
    mac: HmacSha256,
}

impl SigningKey {
    /// Derives the HMAC key from a webhook secret.
    ///
    /// - `whsec_<base64>`: the key is the decoded remainder (standard alphabet,
    ///   padded); an invalid remainder is [`KeyError::InvalidBase64`].
    /// - anything else: the key is the secret's UTF-8 bytes.
    ///
    /// An empty secret (or an empty key after decoding) is
    /// [`KeyError::EmptySecret`].
    pub fn from_secret(secret: &str) -> Result<Self, KeyError> {
        let bytes = match secret.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => BASE64.decode(encoded).map_err(|_| KeyError::InvalidBase64)?,
            None => secret.as_bytes().to_vec(),
        };
        if bytes.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        let mac = HmacSha256::new_from_slice(&bytes).map_err(|_| KeyError::InvalidKey)?;
        Ok(Self { mac })
    }

    /// HMAC over the concatenation of `parts`.
    fn mac_over(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

/// MAC state for the crm scheme: `"<timestamp>.<body>"`.
fn crm_mac(key: &SigningKey, timestamp: &str, body: &[u8]) -> HmacSha256 {
    key.mac_over(&[timestamp.as_bytes(), b".", body])
}

/// MAC state for Standard Webhooks: `"<id>.<timestamp>.<body>"`.
fn standard_mac(key: &SigningKey, webhook_id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    key.mac_over(&[webhook_id.as_bytes(), b".", timestamp.as_bytes(), b".", body])
}

/// One crm-scheme signature: `sha256=` + lowercase hex of
/// `HMAC-SHA256(key, "<timestamp>.<body>")`.
pub fn crm_signature(key: &SigningKey, timestamp: i64, body: &[u8]) -> String {
    let tag = crm_mac(key, &timestamp.to_string(), body).finalize().into_bytes();
    format!("{CRM_SIGNATURE_PREFIX}{}", hex::encode(&tag))
}

/// One Standard Webhooks signature: `v1,` + padded standard base64 of
/// `HMAC-SHA256(key, "<id>.<timestamp>.<body>")`.
pub fn standard_signature(key: &SigningKey, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = standard_mac(key, webhook_id, &timestamp.to_string(), body).finalize().into_bytes();
    format!("{STANDARD_SIGNATURE_VERSION},{}", BASE64.encode(tag))
}

/// Generates a new secret, `whsec_` + base64 of `random`.
///
/// The caller supplies 24 cryptographically random bytes, which keeps this
/// crate free of a random-number dependency.
pub fn generate_secret(random: [u8; 24]) -> String {
    format!("{SECRET_PREFIX}{}", BASE64.encode(random))
}

/// Signature header values for one send.
///
/// The timestamp and id headers are the values passed to [`Signer::sign`]
/// (timestamp formatted as a decimal integer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// Value of [`CRM_SIGNATURE_HEADER`]: `sha256=<hex>` per key, space-separated.
    pub crm_signature: String,
    /// Value of [`STANDARD_SIGNATURE_HEADER`]: `v1,<base64>` per key, space-separated.
    pub standard_signature: String,
}

/// Signs deliveries with one or more keys (new key first during rotation).
#[derive(Debug, Clone)]
pub struct Signer {
    keys: Vec<SigningKey>,
}

impl Signer {
    /// Creates a signer; the keys' order is the order of the signatures in
    /// each header (put the new key first during a rotation).
    ///
    /// Returns [`KeyError::NoKeys`] if `keys` is empty.
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(Self { keys })
    }

    /// Computes all signature header values for one send.
    ///
    /// `timestamp` is the Unix time in seconds that is sent in both timestamp
    /// headers; `webhook_id` is the value of the `webhook-id` header.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> SignatureHeaders {
        let crm = self.keys.iter().map(|key| crm_signature(key, timestamp, body)).collect::<Vec<_>>().join(" ");
        let standard = self
            .keys
            .iter()
            .map(|key| standard_signature(key, webhook_id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ");
        SignatureHeaders { crm_signature: crm, standard_signature: standard }
    }
}

/// Verifies deliveries on the receiving side (used by the webhook-sink tool and
/// by tests).
///
/// A delivery verifies if any signature in the header matches any of the
/// verifier's keys. A verifier without keys rejects everything with
/// [`VerifyError::NoMatchingSignature`].
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<SigningKey>,
}

impl Verifier {
    /// Creates a verifier accepting signatures made with any of `keys`.
    pub fn new(keys: Vec<SigningKey>) -> Self {
        Self { keys }
    }

    /// Creates a verifier with the single key derived from `secret`.
    pub fn from_secret(secret: &str) -> Result<Self, KeyError> {
        Ok(Self::new(vec![SigningKey::from_secret(secret)?]))
    }

    /// Verifies the crm scheme.
    ///
    /// `timestamp_header` and `signature_header` are the values of
    /// [`CRM_TIMESTAMP_HEADER`] and [`CRM_SIGNATURE_HEADER`] (pass `""` if a
    /// header is absent); `body` is the raw request body. `tolerance_s` is the
    /// maximum allowed `|now - timestamp|` in seconds. Signature tokens not of
    /// the form `sha256=<hex>` are ignored.
    pub fn verify_crm(
        &self,
        timestamp_header: &str,
        signature_header: &str,
        body: &[u8],
        now: i64,
        tolerance_s: i64,
    ) -> Result<(), VerifyError> {
        let timestamp = non_empty(timestamp_header, CRM_TIMESTAMP_HEADER)?;
        let signatures = non_empty(signature_header, CRM_SIGNATURE_HEADER)?;
        check_timestamp(timestamp, now, tolerance_s)?;

        let candidates: Vec<Vec<u8>> = signatures
            .split_ascii_whitespace()
            .filter_map(|token| token.strip_prefix(CRM_SIGNATURE_PREFIX))
            .filter_map(hex::decode)
            .collect();
        let macs = self.keys.iter().map(|key| crm_mac(key, timestamp, body));
        any_match(macs, &candidates)
    }

    /// Verifies the Standard Webhooks scheme.
    ///
    /// The header arguments are the values of [`STANDARD_ID_HEADER`],
    /// [`STANDARD_TIMESTAMP_HEADER`] and [`STANDARD_SIGNATURE_HEADER`] (pass
    /// `""` if a header is absent); `body` is the raw request body.
    /// `tolerance_s` is the maximum allowed `|now - timestamp|` in seconds
    /// (Standard Webhooks recommends 300). Tokens with a version other than
    /// `v1` are ignored.
    pub fn verify_standard(
        &self,
        id_header: &str,
        timestamp_header: &str,
        signature_header: &str,
        body: &[u8],
        now: i64,
        tolerance_s: i64,
    ) -> Result<(), VerifyError> {
        let id = non_empty(id_header, STANDARD_ID_HEADER)?;
        let timestamp = non_empty(timestamp_header, STANDARD_TIMESTAMP_HEADER)?;
        let signatures = non_empty(signature_header, STANDARD_SIGNATURE_HEADER)?;
        check_timestamp(timestamp, now, tolerance_s)?;

        let candidates: Vec<Vec<u8>> = signatures
            .split_ascii_whitespace()
            .filter_map(|token| token.split_once(','))
            .filter(|(version, _)| *version == STANDARD_SIGNATURE_VERSION)
            .filter_map(|(_, encoded)| BASE64.decode(encoded).ok())
            .collect();
        let macs = self.keys.iter().map(|key| standard_mac(key, id, timestamp, body));
        any_match(macs, &candidates)
    }
}

/// Trims `value`; an empty result is [`VerifyError::MissingHeader`].
fn non_empty<'a>(value: &'a str, header: &'static str) -> Result<&'a str, VerifyError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        Err(VerifyError::MissingHeader(header))
    } else {
        Ok(trimmed)
    }
}

/// Parses a timestamp header and checks it against `now`.
///
/// Only the canonical decimal form (as produced by the signer) is accepted, so
/// the string that is MACed is exactly the signer's.
fn check_timestamp(timestamp: &str, now: i64, tolerance_s: i64) -> Result<(), VerifyError> {
    let parsed: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    if parsed.to_string() != timestamp {
        return Err(VerifyError::BadTimestamp);
    }
    let tolerance = u64::try_from(tolerance_s).unwrap_or(0);
    if now.abs_diff(parsed) > tolerance {
        return Err(VerifyError::TimestampOutOfTolerance);
    }
    Ok(())
}

/// Constant-time check whether any candidate tag matches any MAC.
fn any_match(macs: impl Iterator<Item = HmacSha256>, candidates: &[Vec<u8>]) -> Result<(), VerifyError> {
    for mac in macs {
        for candidate in candidates {
            if mac.clone().verify_slice(candidate).is_ok() {
                return Ok(());
            }
        }
    }
    Err(VerifyError::NoMatchingSignature)
}

/// Minimal lowercase hex encoding/decoding.
/// Lowercase hex, the one codec of the workspace (signatures here; token hashes and asset tags in crm-api).
pub mod hex {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";

    /// Lowercase hex of `bytes`.
    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len() * 2);
        for &byte in bytes {
            out.push(char::from(DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        out
    }

    /// Decodes hex (either case); `None` on odd length or a non-hex digit.
    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let pairs = text.as_bytes().chunks_exact(2);
        if !pairs.remainder().is_empty() {
            return None;
        }
        pairs.map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?)).collect()
    }

    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            b'A'..=b'F' => Some(digit - b'A' + 10),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
