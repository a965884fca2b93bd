//! [`EgressPolicy`]: configuration plus the two checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

use crate::address::{classify, dual_stack_alias, BlockedAddress};
use crate::webhook_url::{judge_domain, NameVerdict, UrlRejection, WebhookUrl, MAX_URL_LEN};

/// Environment variable that enables plain `http` webhooks.
pub const ALLOW_HTTP_VAR: &str = "CRM_EGRESS_ALLOW_HTTP";
/// Environment variable listing CIDRs exempt from the address rules.
pub const ALLOW_CIDRS_VAR: &str = "CRM_EGRESS_ALLOW_CIDRS";

/// Where outbound webhooks may go.
///
/// The same policy value must be used for both halves: [`check_url`] when a
/// URL is saved and [`check_ip`] for every address the URL's host resolves
/// to when connecting.
///
/// [`check_url`]: EgressPolicy::check_url
/// [`check_ip`]: EgressPolicy::check_ip
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    allow_http: bool,
    allow_cidrs: Vec<IpNet>,
}

impl Default for EgressPolicy {
    /// Same as [`EgressPolicy::strict`].
    fn default() -> Self {
        Self::strict()
    }
}

/// A bad value in the egress settings; `Display` names the variable, e.g.
/// ``CRM_EGRESS_ALLOW_CIDRS: `foo` is not a CIDR``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: `{value}` {problem}")]
pub struct PolicyConfigError {
    variable: &'static str,
    value: String,
    problem: &'static str,
}

impl PolicyConfigError {
    /// The environment variable holding the bad value.
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// The offending value (one entry, for the CIDR list).
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl EgressPolicy {
    /// A policy allowing plain `http` if `allow_http`, and exempting the
    /// given networks from the address rules (never from the name rules,
    /// except that `localhost` is accepted when loopback is exempt).
    pub fn new(allow_http: bool, allow_cidrs: Vec<IpNet>) -> Self {
        Self { allow_http, allow_cidrs }
    }

    /// Strict default: https only, no exemptions.
    pub fn strict() -> Self {
        Self::new(false, Vec::new())
    }

    /// Builds a policy from the raw values of `CRM_EGRESS_ALLOW_HTTP` and
    /// `CRM_EGRESS_ALLOW_CIDRS` (`None` = unset).
    ///
    /// * allow-http: `true`/`false`/`1`/`0` (case-insensitive, surrounding
    ///   whitespace ignored); unset or empty means `false`.
    /// * allow-cidrs: comma-separated CIDRs, whitespace around entries
    ///   ignored, empty entries skipped; a bare IP means `/32` or `/128`.
    ///   Unset or empty means no exemptions.
    ///
    /// # Errors
    ///
    /// [`PolicyConfigError`] naming the variable and the value it could not
    /// parse.
    pub fn from_settings(allow_http: Option<&str>, allow_cidrs: Option<&str>) -> Result<Self, PolicyConfigError> {
        let allow_http = parse_bool(allow_http.unwrap_or_default())?;
        let allow_cidrs = allow_cidrs
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_cidr)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(allow_http, allow_cidrs))
    }

    /// [`from_settings`](Self::from_settings) with the values read from the
    /// process environment.
    ///
    /// # Errors
    ///
    /// As `from_settings`, and when a variable is not valid UTF-8.
    pub fn from_env() -> Result<Self, PolicyConfigError> {
        let http = read_env(ALLOW_HTTP_VAR)?;
        let cidrs = read_env(ALLOW_CIDRS_VAR)?;
        Self::from_settings(http.as_deref(), cidrs.as_deref())
    }

    /// Whether plain `http` URLs are accepted.
    pub fn allows_http(&self) -> bool {
        self.allow_http
    }

    /// The networks exempt from the address rules.
    pub fn allow_cidrs(&self) -> &[IpNet] {
        &self.allow_cidrs
    }

    /// Write-time check of a webhook URL; returns the first violation.
    ///
    /// Passing this does not make the destination safe: a public name can
    /// resolve to a private address (or change what it resolves to — DNS
    /// rebinding), so [`check_ip`](Self::check_ip) must run on every
    /// resolved address at connect time.
    ///
    /// # Errors
    ///
    /// The first [`UrlRejection`] that applies, in this order: length,
    /// parse, scheme, credentials, host present, fragment, port 0, host
    /// (IP address rules or name rules).
    pub fn check_url(&self, raw: &str) -> Result<WebhookUrl, UrlRejection> {
        if raw.len() > MAX_URL_LEN {
            return Err(UrlRejection::TooLong { len: raw.len() });
        }
        let mut url = Url::parse(raw).map_err(UrlRejection::Invalid)?;

        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => {
                return Err(UrlRejection::SchemeNotAllowed { scheme: other.to_owned(), http_allowed: self.allow_http })
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRejection::Credentials);
        }
        let Some(host) = url.host() else {
            return Err(UrlRejection::MissingHost);
        };
        if url.fragment().is_some() {
            return Err(UrlRejection::Fragment);
        }
        if url.port() == Some(0) {
            return Err(UrlRejection::PortZero);
        }

        // The host to write back when the name rules normalised it
        // (trailing dots, case).
        let clean_name = match host {
            Host::Ipv4(v4) => {
                self.check_host_ip(IpAddr::V4(v4))?;
                None
            }
            Host::Ipv6(v6) => {
                self.check_host_ip(IpAddr::V6(v6))?;
                None
            }
            Host::Domain(name) => {
                let clean = match judge_domain(name)? {
                    NameVerdict::Ip(ip) => {
                        self.check_host_ip(ip)?;
                        match ip {
                            IpAddr::V4(v4) => v4.to_string(),
                            IpAddr::V6(v6) => format!("[{v6}]"),
                        }
                    }
                    NameVerdict::Localhost if self.exempts_loopback() => "localhost".to_owned(),
                    NameVerdict::Localhost => return Err(UrlRejection::Localhost),
                    NameVerdict::Domain(clean) => clean,
                };
                Some(clean).filter(|clean| clean != name)
            }
        };
        if let Some(clean) = clean_name {
            url.set_host(Some(&clean)).map_err(UrlRejection::Invalid)?;
        }
        if url.as_str().len() > MAX_URL_LEN {
            return Err(UrlRejection::TooLong { len: url.as_str().len() });
        }
        Ok(WebhookUrl::new(url))
    }

    /// Connect-time check of one resolved address.
    ///
    /// Allowed if the address is inside an `allow_cidrs` entry (an
    /// IPv4-mapped IPv6 address matches entries for its IPv4 form and vice
    /// versa), or if [`classify`] finds it public.
    ///
    /// # Errors
    ///
    /// [`BlockedAddress`] with the address and its class.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), BlockedAddress> {
        if self.is_exempt(ip) {
            return Ok(());
        }
        match classify(ip) {
            None => Ok(()),
            Some(class) => Err(BlockedAddress { ip, class }),
        }
    }

    fn is_exempt(&self, ip: IpAddr) -> bool {
        let alias = dual_stack_alias(ip);
        self.allow_cidrs.iter().any(|net| net.contains(&ip) || alias.is_some_and(|alias| net.contains(&alias)))
    }

    /// Whether the name `localhost` is acceptable: loopback is exempt.
    fn exempts_loopback(&self) -> bool {
        self.is_exempt(IpAddr::V4(Ipv4Addr::LOCALHOST)) || self.is_exempt(IpAddr::V6(Ipv6Addr::LOCALHOST))
    }

    /// IP-literal host: [`check_ip`](Self::check_ip) as a URL rejection.
    fn check_host_ip(&self, ip: IpAddr) -> Result<(), UrlRejection> {
        self.check_ip(ip).map_err(UrlRejection::BlockedAddress)
    }
}

fn parse_bool(raw: &str) -> Result<bool, PolicyConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "0" => Ok(false),
        "true" | "1" => Ok(true),
        _ => Err(PolicyConfigError {
            variable: ALLOW_HTTP_VAR,
            value: raw.to_owned(),
            problem: "is not a boolean (expected true, false, 1 or 0)",
        }),
    }
}

fn parse_cidr(entry: &str) -> Result<IpNet, PolicyConfigError> {
    let parsed =
        if entry.contains('/') { entry.parse::<IpNet>().ok() } else { entry.parse::<IpAddr>().ok().map(IpNet::from) };
    parsed.map(|net| net.trunc()).ok_or_else(|| PolicyConfigError {
        variable: ALLOW_CIDRS_VAR,
        value: entry.to_owned(),
        problem: "is not a CIDR",
    })
}

fn read_env(variable: &'static str) -> Result<Option<String>, PolicyConfigError> {
    match std::env::var(variable) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(raw)) => Err(PolicyConfigError {
            variable,
            value: raw.to_string_lossy().into_owned(),
            problem: "is not valid UTF-8",
        }),
    }
}
