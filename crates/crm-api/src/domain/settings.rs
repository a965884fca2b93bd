//! The workspace's webhook settings: what a `PUT` may say, and the rules of secrets.
//!
//! The URL goes through the egress policy (`https`, a public host, in any spelling); `events` is a subset of the
//! subscribable events; a chosen secret is 16–256 characters without whitespace, or a `whsec_` secret whose key
//! decodes to 16–256 bytes. Enabling needs a URL, a secret (given now or set before) and at least one event.

use super::input::{double_option, Validator};
use crate::error::ApiError;
use crm_events::EventType;
use egress::EgressPolicy;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// `PUT` body. `enabled`, `url` and `events` must be present (`url` may be null); `secret` is optional and
/// write-only. Enabling requires a URL, a secret (given now or already stored) and at least one event. Any error
/// saves nothing.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SettingsUpdate)]
pub struct SettingsBody {
    enabled: bool,
    /// The target URL, or null (blank counts as null) to clear it. Must be an absolute `https` URL (plain `http`
    /// only where the operator set `CRM_EGRESS_ALLOW_HTTP`) without userinfo, fragment or port 0, at most 2048
    /// bytes, whose host is a public fully qualified domain name or public IP address: localhost, internal
    /// suffixes (`.local`, `.internal`, `.lan`, `.corp`, `.home.arpa`, ...), and private, loopback, link-local,
    /// unique-local, CGNAT, multicast, reserved or unspecified addresses are rejected in any spelling
    /// (decimal/octal/hex IPv4, IPv4-mapped IPv6, trailing dots). A rejected URL is a 422 on field `url`.
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, required = true, max_length = 2048)]
    url: Option<Option<String>>,
    /// Subset of `crm_row.created`, `crm_row.updated`; duplicates are folded. An unknown name is a 422 on
    /// `events[<index>]`. May be empty only while disabled.
    #[schema(value_type = Vec<crate::routes::docs::SubscribableEventSchema>)]
    events: Vec<String>,
    /// Optional; absent keeps the current secret. Either `whsec_` followed by standard base64 whose decoded key is
    /// 16 to 256 bytes, or 16 to 256 characters without whitespace or control characters (the key is then its
    /// UTF-8 bytes). A new secret replacing a set one keeps the old one signing for 24 hours.
    #[serde(default)]
    #[schema(value_type = Option<String>, write_only, min_length = 16, max_length = 350)]
    secret: Option<SecretString>,
    /// Optional: the most requests per second to send to the URL, for a CRM that enforces a quota (`0.5` is one
    /// every two seconds). More than 0, at most 10000. Absent or null: no cap. The workers pace to it together
    /// (each to its share) without spending the retry budget: what they hold waits its turn, and a burst larger
    /// than a few seconds' worth goes back to the stream for a while (not an attempt).
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0, maximum = 10000.0)]
    max_per_second: Option<f64>,
}

/// A checked `PUT`.
pub struct SettingsUpdate {
    pub enabled: bool,
    pub url: Option<String>,
    /// Subscribed events, each once, in the order given.
    pub events: Vec<String>,
    pub secret: Option<SecretString>,
    pub max_per_second: Option<f64>,
}

/// The most `max_per_second` may be.
pub const MAX_RATE: f64 = 10_000.0;

impl SettingsBody {
    pub fn validate(self, egress: &EgressPolicy) -> Result<SettingsUpdate, ApiError> {
        let mut v = Validator::default();
        let url = match self.url.flatten().filter(|u| !u.trim().is_empty()) {
            None => None,
            Some(raw) => v.check("url", egress.check_url(raw.trim()).map_err(|e| e.to_string())),
        };
        let mut events: Vec<String> = Vec::new();
        for (i, name) in self.events.iter().enumerate() {
            match EventType::parse_subscribable(name) {
                Some(t) if !events.iter().any(|e| e == t.as_str()) => events.push(t.as_str().to_owned()),
                Some(_) => {}
                None => v.error(format!("events[{i}]"), "must be crm_row.created or crm_row.updated"),
            }
        }
        if let Some(secret) = &self.secret {
            if let Err(message) = check_secret(secret) {
                v.error("secret", message);
            }
        }
        if self.max_per_second.is_some_and(|rate| !(rate > 0.0 && rate <= MAX_RATE)) {
            v.error("max_per_second", format!("must be more than 0 and at most {MAX_RATE}, or null for no cap"));
        }
        v.finish()?;
        Ok(SettingsUpdate {
            enabled: self.enabled,
            url: url.map(|u| u.as_str().to_owned()),
            events,
            secret: self.secret,
            max_per_second: self.max_per_second,
        })
    }
}

impl SettingsUpdate {
    /// An enabled webhook must be able to send: a URL, a secret (this one or the one already set), an event.
    pub fn check_complete(&self, secret_already_set: bool) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        let mut v = Validator::default();
        if self.url.is_none() {
            v.error("url", "is required to enable the webhook");
        }
        if self.secret.is_none() && !secret_already_set {
            v.error("secret", "is required to enable the webhook; set one or generate one");
        }
        if self.events.is_empty() {
            v.error("events", "must name at least one event to enable the webhook");
        }
        v.finish()
    }
}

/// Checks a secret a user chose. Messages never echo it.
pub fn check_secret(secret: &SecretString) -> Result<(), String> {
    let value = secret.expose_secret();
    if value.starts_with(webhook_signing::SECRET_PREFIX) {
        let min = webhook_signing::MIN_KEY_BYTES;
        return match webhook_signing::key_len(value) {
            Ok(len) if (min..=256).contains(&len) => Ok(()),
            Ok(_) | Err(webhook_signing::KeyError::EmptySecret) => {
                Err(format!("a whsec_ secret must decode to {min} to 256 bytes"))
            }
            Err(_) => Err("a whsec_ secret must be followed by base64".to_owned()),
        };
    }
    let len = value.chars().count();
    if !(16..=256).contains(&len) {
        return Err("must be 16 to 256 characters, or a whsec_ secret".to_owned());
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".to_owned());
    }
    Ok(())
}

/// The last four characters of a secret, which the settings show so a person can tell which secret is set.
pub fn last4(secret: &SecretString) -> String {
    let chars: Vec<char> = secret.expose_secret().chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_enough_and_whsec_keys_too() {
        let s = |v: &str| SecretString::from(v.to_owned());
        assert!(check_secret(&s("a-secret-of-sixteen")).is_ok());
        assert!(check_secret(&s("short")).is_err());
        assert!(check_secret(&s("has a space in the middle")).is_err());
        assert!(check_secret(&s("whsec_AA==")).is_err(), "a 1-byte key");
        assert!(check_secret(&s("whsec_MDEyMzQ1Njc4OWFiY2RlZg==")).is_ok(), "a 16-byte key");
        assert_eq!(last4(&s("abcdefgh")), "efgh");
    }
}
