//! The write-time half: [`WebhookUrl`], [`UrlRejection`] and the rules for
//! host names.

use std::fmt;

use crate::address::BlockedAddress;

/// Longest webhook URL accepted, in bytes (checked on the raw input and on
/// the normalised form).
pub const MAX_URL_LEN: usize = 2048;

/// Domain suffixes that only resolve inside private networks. A host equal
/// to one of these or ending in `.{suffix}` is rejected.
const INTERNAL_SUFFIXES: &[&str] =
    &["local", "localdomain", "internal", "home.arpa", "lan", "intranet", "corp", "private"];

/// Why [`EgressPolicy::check_url`](crate::EgressPolicy::check_url) refused a
/// URL.
///
/// `Display` is a short predicate about "the URL", meant for an API
/// validation error shown to the user (for example
/// `webhook_url must use https`). It never echoes the URL, which may carry
/// secrets in its path or query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlRejection {
    /// Longer than [`MAX_URL_LEN`] bytes.
    #[error("must be at most {max} characters long", max = MAX_URL_LEN)]
    TooLong {
        /// Length of the rejected input in bytes.
        len: usize,
    },
    /// Not an absolute URL the WHATWG parser accepts.
    #[error("is not a valid absolute URL")]
    Invalid(#[source] url::ParseError),
    /// Scheme other than `https` (or `http` when the policy allows it).
    #[error("{}", scheme_message(*.http_allowed))]
    SchemeNotAllowed {
        /// The scheme that was used, lowercased.
        scheme: String,
        /// Whether the policy would have accepted plain `http`.
        http_allowed: bool,
    },
    /// The URL carries a username and/or password.
    #[error("must not contain a username or password")]
    Credentials,
    /// No host, or a host made only of dots.
    #[error("must have a host")]
    MissingHost,
    /// The URL has a `#fragment` (even an empty one).
    #[error("must not contain a fragment")]
    Fragment,
    /// Explicit port 0.
    #[error("must not use port 0")]
    PortZero,
    /// The host is an IP address that the policy blocks.
    #[error("must not point to a private, loopback or otherwise non-public address")]
    BlockedAddress(#[source] BlockedAddress),
    /// `localhost` or a name under `.localhost`.
    #[error("must not point to localhost")]
    Localhost,
    /// A name under a suffix that only resolves on private networks
    /// (`.local`, `.internal`, `.lan`, ...).
    #[error("must not use an internal host name")]
    InternalName,
    /// A host name with an empty label (`a..example.com`, `.example.com`).
    #[error("must have a valid host name")]
    InvalidName,
    /// A host name without a dot (`https://intranet/`).
    #[error("must use a fully qualified domain name")]
    SingleLabel,
    /// A name whose last label starts with a digit: no public top-level
    /// domain does, so this is an address in disguise.
    #[error("must not use a numeric host name")]
    NumericName,
}

fn scheme_message(http_allowed: bool) -> &'static str {
    if http_allowed {
        "must use http or https"
    } else {
        "must use https"
    }
}

/// A webhook URL that passed [`EgressPolicy::check_url`](crate::EgressPolicy::check_url).
///
/// It can only be built by `check_url`, so holding one proves the URL was
/// vetted at write time. The host is normalised (lowercase, IDNA, trailing
/// dots removed). The connect-time check still has to run on every resolved
/// address.
///
/// `Display` and `Debug` show only `scheme://host[:port]/…`: path and query
/// often carry tokens. Use [`WebhookUrl::as_str`] when the full URL is
/// really needed (to send the request, to store it).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub(crate) fn new(url: url::Url) -> Self {
        Self(url)
    }

    /// The full normalised URL, including path and query. Do not log it.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The parsed URL.
    pub fn url(&self) -> &url::Url {
        &self.0
    }

    /// The host without trailing dot; IPv6 literals keep their brackets.
    pub fn host_str(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    /// The full normalised URL as an owned string.
    pub fn into_string(self) -> String {
        self.0.into()
    }

    /// `scheme://host[:port]/…` — safe to log. The `…` is present whenever
    /// the URL has a path other than `/` or a query.
    pub fn redacted(&self) -> String {
        let mut out = format!("{}://{}", self.0.scheme(), self.host_str());
        if let Some(port) = self.0.port() {
            out.push(':');
            out.push_str(&port.to_string());
        }
        if self.0.path() == "/" && self.0.query().is_none() {
            out.push('/');
        } else {
            out.push_str("/…");
        }
        out
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WebhookUrl").field(&self.redacted()).finish()
    }
}

/// Outcome of the name rules for a domain host.
pub(crate) enum NameVerdict {
    /// A public-looking DNS name (already stripped and lowercased).
    Domain(String),
    /// The name is really an IP address; check it as one.
    Ip(std::net::IpAddr),
    /// Exactly `localhost`; allowed only if the policy exempts loopback.
    Localhost,
}

/// Applies the name rules to a domain host as the `url` crate left it.
pub(crate) fn judge_domain(raw_host: &str) -> Result<NameVerdict, UrlRejection> {
    let host = raw_host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(UrlRejection::MissingHost);
    }
    // The url crate turns every IPv4 spelling into Host::Ipv4, but be
    // defensive about anything it might leave as a domain.
    if let Ok(ip) = host.parse() {
        return Ok(NameVerdict::Ip(ip));
    }
    if host == "localhost" {
        return Ok(NameVerdict::Localhost);
    }
    if host.ends_with(".localhost") {
        return Err(UrlRejection::Localhost);
    }
    let Some((_, tld)) = host.rsplit_once('.') else {
        return Err(UrlRejection::SingleLabel);
    };
    let is_under = |suffix: &str| host == suffix || host.strip_suffix(suffix).is_some_and(|rest| rest.ends_with('.'));
    if INTERNAL_SUFFIXES.iter().any(|s| is_under(s)) {
        return Err(UrlRejection::InternalName);
    }
    // Empty labels ("a..b") cannot be resolved; no real name has them.
    if host.split('.').any(str::is_empty) {
        return Err(UrlRejection::InvalidName);
    }
    if tld.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(UrlRejection::NumericName);
    }
    Ok(NameVerdict::Domain(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The url crate never hands these to us as domains; the name rules
    /// must still cope if it ever does.
    #[test]
    fn defensive_ip_and_numeric_names() {
        for name in ["127.0.0.1", "127.0.0.1.", "10.0.0.1..", "::1"] {
            assert!(matches!(judge_domain(name), Ok(NameVerdict::Ip(_))), "{name}");
        }
        for name in ["foo.123", "a.0x7f", "1.2.3.4.5"] {
            assert!(matches!(judge_domain(name), Err(UrlRejection::NumericName)), "{name}");
        }
    }

    #[test]
    fn name_rules() {
        let cases: &[(&str, Option<UrlRejection>)] = &[
            ("example.com", None),
            ("Example.COM..", None),
            ("123.example.com", None),
            ("mylocal.example", None),
            ("internal.example.com", None),
            (".", Some(UrlRejection::MissingHost)),
            ("foo.localhost", Some(UrlRejection::Localhost)),
            ("local", Some(UrlRejection::SingleLabel)),
            ("home.arpa", Some(UrlRejection::InternalName)),
            ("x.localdomain", Some(UrlRejection::InternalName)),
            ("x.private", Some(UrlRejection::InternalName)),
            ("x.intranet", Some(UrlRejection::InternalName)),
            (".example.com", Some(UrlRejection::InvalidName)),
        ];
        for (name, expected) in cases {
            let got = judge_domain(name).err();
            assert_eq!(&got, expected, "{name}");
        }
        assert!(matches!(judge_domain("LocalHost."), Ok(NameVerdict::Localhost)));
    }
}
