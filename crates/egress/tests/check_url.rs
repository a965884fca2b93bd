//! Write-time checks: hostile URLs that must be rejected and good URLs that
//! must pass.

use egress::{AddressClass, EgressPolicy, UrlRejection, MAX_URL_LEN};

/// A short, stable name for a rejection so each table row can say *why* it
/// must fail (a loopback URL rejected for a parse error would be a bug).
fn kind(rejection: &UrlRejection) -> String {
    match rejection {
        UrlRejection::TooLong { .. } => "too-long".into(),
        UrlRejection::Invalid(_) => "invalid".into(),
        UrlRejection::SchemeNotAllowed { .. } => "scheme".into(),
        UrlRejection::Credentials => "credentials".into(),
        UrlRejection::MissingHost => "no-host".into(),
        UrlRejection::Fragment => "fragment".into(),
        UrlRejection::PortZero => "port-0".into(),
        UrlRejection::BlockedAddress(blocked) => format!("ip:{}", blocked.class),
        UrlRejection::Localhost => "localhost".into(),
        UrlRejection::InternalName => "internal-name".into(),
        UrlRejection::InvalidName => "invalid-name".into(),
        UrlRejection::SingleLabel => "single-label".into(),
        UrlRejection::NumericName => "numeric-name".into(),
        other => panic!("unexpected rejection variant {other:?}"),
    }
}

const LOOPBACK: &str = "ip:loopback";
const PRIVATE: &str = "ip:private";

/// (url, expected rejection kind, why it is hostile)
const HOSTILE: &[(&str, &str, &str)] = &[
    // IPv4 loopback in every spelling the WHATWG parser understands.
    ("https://127.0.0.1/", LOOPBACK, "plain loopback"),
    ("https://2130706433/", LOOPBACK, "decimal integer IPv4"),
    ("https://017700000001/", LOOPBACK, "octal integer IPv4"),
    ("https://0x7f000001/", LOOPBACK, "hex integer IPv4"),
    ("https://0x7f.0.0.1/", LOOPBACK, "hex first octet"),
    ("https://0x7f.1/", LOOPBACK, "hex octet, two-part form"),
    ("https://0177.0.0.1/", LOOPBACK, "octal first octet"),
    ("https://127.1/", LOOPBACK, "two-part short form"),
    ("https://127.0.0.1./", LOOPBACK, "trailing dot on IP"),
    ("https://%31%32%37.0.0.1/", LOOPBACK, "percent-encoded host"),
    ("https://%30x7f.0.0.1/", LOOPBACK, "percent-encoded hex"),
    ("https://１２７.0.0.1/", LOOPBACK, "fullwidth digits"),
    ("https://127。0。0。1/", LOOPBACK, "ideographic full stops"),
    ("https://127.0.0.1:8080/admin", LOOPBACK, "loopback with port"),
    // Loopback by name.
    ("https://localhost/", "localhost", "localhost"),
    ("https://localhost./", "localhost", "localhost with trailing dot"),
    ("https://LOCALHOST/", "localhost", "uppercase localhost"),
    ("https://foo.localhost/", "localhost", "subdomain of localhost"),
    ("https://a.b.localhost../", "localhost", "nested, two trailing dots"),
    // IPv6 loopback / unspecified and IPv6 forms embedding IPv4.
    ("https://[::1]/", LOOPBACK, "IPv6 loopback"),
    ("https://[0:0:0:0:0:0:0:1]/", LOOPBACK, "IPv6 loopback, long form"),
    ("https://[::ffff:127.0.0.1]/", LOOPBACK, "IPv4-mapped loopback"),
    ("https://[::ffff:7f00:1]/", LOOPBACK, "IPv4-mapped loopback, hex"),
    ("https://[::127.0.0.1]/", LOOPBACK, "IPv4-compatible loopback"),
    ("https://[::8.8.8.8]/", "ip:reserved", "IPv4-compatible is deprecated"),
    ("https://[64:ff9b::7f00:1]/", LOOPBACK, "NAT64 of loopback"),
    ("https://[64:ff9b::a00:1]/", PRIVATE, "NAT64 of 10.0.0.1"),
    ("https://[64:ff9b::a9fe:a9fe]/", "ip:link-local", "NAT64 of metadata"),
    ("https://[64:ff9b:1::a9fe:a9fe]/", "ip:local-use nat64", "local-use NAT64 of metadata"),
    ("https://[64:ff9b:1::808:808]/", "ip:local-use nat64", "local-use NAT64 of a public IPv4"),
    ("https://[64:ff9b:1::8.8.8.8]/", "ip:local-use nat64", "local-use NAT64, dotted IPv4"),
    ("https://[64:ff9b:1:808:8:800::]/", "ip:local-use nat64", "local-use NAT64, /48 layout"),
    ("https://[64:ff9b:1::]/", "ip:local-use nat64", "local-use NAT64 prefix itself"),
    ("https://[2002:7f00:1::]/", LOOPBACK, "6to4 of loopback"),
    ("https://[2002:a9fe:a9fe::1]/", "ip:link-local", "6to4 of metadata"),
    ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "ip:reserved", "Teredo"),
    ("https://[::]/", "ip:unspecified", "IPv6 unspecified"),
    // Unspecified / private / special IPv4.
    ("https://0.0.0.0/", "ip:unspecified", "unspecified"),
    ("https://0/", "ip:unspecified", "0 parses as 0.0.0.0"),
    ("https://10.0.0.1/", PRIVATE, "RFC 1918 10/8"),
    ("https://172.16.5.4/", PRIVATE, "RFC 1918 172.16/12"),
    ("https://172.31.255.255/", PRIVATE, "top of 172.16/12"),
    ("https://192.168.1.1/", PRIVATE, "RFC 1918 192.168/16"),
    ("https://100.64.0.1/", "ip:shared (carrier-grade nat)", "CGNAT"),
    ("https://169.254.169.254/latest/meta-data/", "ip:link-local", "cloud metadata"),
    ("https://[fe80::1]/", "ip:link-local", "IPv6 link-local"),
    ("https://[fc00::1]/", "ip:unique-local", "IPv6 ULA fc00::/8"),
    ("https://[fd12:3456::1]/", "ip:unique-local", "IPv6 ULA fd00::/8"),
    ("https://[fec0::1]/", "ip:site-local", "IPv6 site-local"),
    ("https://224.0.0.1/", "ip:multicast", "IPv4 multicast"),
    ("https://[ff02::1]/", "ip:multicast", "IPv6 multicast"),
    ("https://255.255.255.255/", "ip:broadcast", "limited broadcast"),
    ("https://240.0.0.1/", "ip:reserved", "class E"),
    ("https://198.18.0.1/", "ip:benchmarking", "benchmarking"),
    ("https://192.0.2.1/", "ip:documentation", "TEST-NET-1"),
    ("https://[2001:db8::1]/", "ip:documentation", "IPv6 documentation"),
    ("https://192.0.0.8/", "ip:ietf protocol assignment", "IETF assignments"),
    ("https://192.88.99.1/", "ip:6to4 relay anycast", "6to4 relay"),
    ("https://[100::1]/", "ip:discard-only", "IPv6 discard prefix"),
    // Credentials.
    ("https://good.example@127.0.0.1/", "credentials", "userinfo masking the host"),
    ("https://user:pass@example.com/", "credentials", "username and password"),
    ("https://:pass@example.com/", "credentials", "password only"),
    // Internal-only names.
    ("https://metadata.google.internal/", "internal-name", "GCP metadata name"),
    ("https://printer.local/", "internal-name", "mDNS name"),
    ("https://nas.home.arpa/", "internal-name", "home network"),
    ("https://db.corp./", "internal-name", "corp with trailing dot"),
    ("https://box.LAN/", "internal-name", "uppercase lan"),
    ("https://intranet/", "single-label", "single-label name"),
    ("https:///nohost", "single-label", "parser takes `nohost` as host"),
    ("https://a..example.com/", "invalid-name", "empty label"),
    ("https://../", "no-host", "host of only dots"),
    // Scheme, shape and parse problems.
    ("http://example.com/", "scheme", "plain http on the strict policy"),
    ("ftp://example.com/", "scheme", "ftp"),
    ("javascript:alert(1)", "scheme", "javascript"),
    ("file:///etc/passwd", "scheme", "file"),
    ("gopher://example.com/", "scheme", "gopher"),
    ("https://example.com:0/", "port-0", "port 0"),
    ("https://example.com/#frag", "fragment", "fragment"),
    ("https://example.com/#", "fragment", "empty fragment"),
    ("not a url", "invalid", "not a URL"),
    ("", "invalid", "empty string"),
    ("https://1.2.3.4.5/", "invalid", "five-part IPv4"),
    ("https://[::1/", "invalid", "unclosed bracket"),
    ("https://[fe80::1%25eth0]/", "invalid", "IPv6 zone id"),
];

#[test]
fn hostile_urls_are_rejected_for_the_expected_reason() {
    assert!(HOSTILE.len() >= 40, "need at least 40 hostile cases");
    let policy = EgressPolicy::strict();
    let mut failures = Vec::new();
    for &(url, expected, why) in HOSTILE {
        match policy.check_url(url) {
            Ok(accepted) => failures.push(format!("{url:?} ({why}) was accepted as {accepted}")),
            Err(rejection) if kind(&rejection) != expected => failures
                .push(format!("{url:?} ({why}) rejected as {} ({rejection}), expected {expected}", kind(&rejection))),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn overlong_url_is_rejected() {
    let url = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
    assert!(url.len() > MAX_URL_LEN);
    let err = EgressPolicy::strict().check_url(&url).unwrap_err();
    assert_eq!(err, UrlRejection::TooLong { len: url.len() });

    let exactly = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN - 20));
    assert_eq!(exactly.len(), MAX_URL_LEN);
    EgressPolicy::strict().check_url(&exactly).unwrap();
}

#[test]
fn url_that_grows_past_the_limit_when_normalised_is_rejected() {
    // Each space becomes %20 when serialised.
    let url = format!("https://example.com/{}x", " ".repeat(1000));
    assert!(url.len() <= MAX_URL_LEN);
    assert!(matches!(EgressPolicy::strict().check_url(&url), Err(UrlRejection::TooLong { .. })));
}

/// (input, normalised URL, host_str)
const GOOD: &[(&str, &str, &str)] = &[
    ("https://example.com/hook", "https://example.com/hook", "example.com"),
    (
        "https://crm.example.org:8443/webhooks/in?token=abc",
        "https://crm.example.org:8443/webhooks/in?token=abc",
        "crm.example.org",
    ),
    ("https://8.8.8.8/", "https://8.8.8.8/", "8.8.8.8"),
    ("https://[2606:4700:4700::1111]/", "https://[2606:4700:4700::1111]/", "[2606:4700:4700::1111]"),
    ("https://[::ffff:8.8.8.8]/", "https://[::ffff:808:808]/", "[::ffff:808:808]"),
    ("https://EXAMPLE.com./x", "https://example.com/x", "example.com"),
    ("https://example.com../x", "https://example.com/x", "example.com"),
    ("https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/", "xn--bcher-kva.example"),
    ("https://Bücher.example/", "https://xn--bcher-kva.example/", "xn--bcher-kva.example"),
    ("https://example.com:443/", "https://example.com/", "example.com"),
    ("https://[64:ff9b::808:808]/", "https://[64:ff9b::808:808]/", "[64:ff9b::808:808]"),
    ("https://[64:ff9b::1.1.1.1]/", "https://[64:ff9b::101:101]/", "[64:ff9b::101:101]"),
    ("https://[2002:808:808::1]/", "https://[2002:808:808::1]/", "[2002:808:808::1]"),
    ("https://1.1.1.1:8443/x", "https://1.1.1.1:8443/x", "1.1.1.1"),
    ("https://local.example.com/", "https://local.example.com/", "local.example.com"),
    ("https://localhost.example.com/", "https://localhost.example.com/", "localhost.example.com"),
];

#[test]
fn good_urls_pass_the_strict_policy() {
    let policy = EgressPolicy::strict();
    for &(input, normalised, host) in GOOD {
        let url = policy.check_url(input).unwrap_or_else(|e| panic!("{input:?} was rejected: {e}"));
        assert_eq!(url.as_str(), normalised, "{input:?}");
        assert_eq!(url.host_str(), host, "{input:?}");
        assert_eq!(url.url().as_str(), normalised, "{input:?}");
        assert_eq!(url.clone().into_string(), normalised, "{input:?}");
    }
}

#[test]
fn allow_http_policy_accepts_http() {
    let policy = EgressPolicy::new(true, Vec::new());
    assert!(policy.allows_http());
    let url = policy.check_url("http://example.com/").unwrap();
    assert_eq!(url.as_str(), "http://example.com/");
    // Still not other schemes, and the message mentions both.
    let err = policy.check_url("ftp://example.com/").unwrap_err();
    assert_eq!(err.to_string(), "must use http or https");
    // Address rules still apply.
    assert!(policy.check_url("http://127.0.0.1/").is_err());
}

#[test]
fn loopback_exemption_allows_localhost_only() {
    let policy = EgressPolicy::new(true, vec!["127.0.0.0/8".parse().unwrap()]);

    let url = policy.check_url("http://127.0.0.1:8080/x").unwrap();
    assert_eq!(url.as_str(), "http://127.0.0.1:8080/x");
    let url = policy.check_url("https://localhost:9000/").unwrap();
    assert_eq!(url.host_str(), "localhost");
    let url = policy.check_url("https://localhost.:9000/").unwrap();
    assert_eq!(url.as_str(), "https://localhost:9000/");
    policy.check_url("https://[::ffff:127.0.0.1]/").unwrap();
    policy.check_url("https://2130706433/").unwrap();

    assert!(matches!(
        policy.check_url("https://10.0.0.1/"),
        Err(UrlRejection::BlockedAddress(b)) if b.class == AddressClass::Private
    ));
    assert_eq!(policy.check_url("https://foo.localhost/"), Err(UrlRejection::Localhost));
    assert!(policy.check_url("https://[::1]/").is_err(), "::1 is not in 127/8");
    assert_eq!(
        policy.check_url("https://printer.local/"),
        Err(UrlRejection::InternalName),
        "name rules are not lifted"
    );
}

#[test]
fn ipv6_loopback_exemption_also_allows_localhost() {
    let policy = EgressPolicy::new(false, vec!["::1/128".parse().unwrap()]);
    policy.check_url("https://localhost/").unwrap();
    policy.check_url("https://[::1]/").unwrap();
    assert!(policy.check_url("https://127.0.0.1/").is_err());
}

#[test]
fn private_exemption_does_not_allow_localhost() {
    let policy = EgressPolicy::new(false, vec!["10.0.0.0/8".parse().unwrap()]);
    policy.check_url("https://10.1.2.3/").unwrap();
    assert_eq!(policy.check_url("https://localhost/"), Err(UrlRejection::Localhost));
}

#[test]
fn first_violation_wins() {
    let policy = EgressPolicy::strict();
    // Scheme before credentials before address.
    assert!(matches!(policy.check_url("http://u:p@127.0.0.1/#x"), Err(UrlRejection::SchemeNotAllowed { .. })));
    assert_eq!(policy.check_url("https://u:p@127.0.0.1/#x"), Err(UrlRejection::Credentials));
    assert_eq!(policy.check_url("https://127.0.0.1:0/#x"), Err(UrlRejection::Fragment));
    assert_eq!(policy.check_url("https://127.0.0.1:0/"), Err(UrlRejection::PortZero));
}

#[test]
fn rejection_messages_are_short_and_do_not_echo_the_url() {
    let policy = EgressPolicy::strict();
    let cases = [
        ("http://secret-host.example/?token=s3cr3t", "must use https"),
        ("https://user:s3cr3t@example.com/", "must not contain a username or password"),
        ("https://10.0.0.1/?token=s3cr3t", "must not point to a private, loopback or otherwise non-public address"),
        ("https://localhost/?token=s3cr3t", "must not point to localhost"),
        ("https://example.com/#s3cr3t", "must not contain a fragment"),
        ("s3cr3t", "is not a valid absolute URL"),
    ];
    for (url, message) in cases {
        let err = policy.check_url(url).unwrap_err();
        let shown = err.to_string();
        assert_eq!(shown, message, "{url:?}");
        assert!(!shown.contains("s3cr3t"));
    }
}

#[test]
fn blocked_address_is_the_error_source() {
    let err = EgressPolicy::strict().check_url("https://169.254.169.254/").unwrap_err();
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert_eq!(source, "address 169.254.169.254 is link-local and not allowed");
}

#[test]
fn display_and_debug_hide_path_and_query() {
    let url = EgressPolicy::strict().check_url("https://crm.example.org:8443/webhooks/in?token=s3cr3t").unwrap();
    let shown = url.to_string();
    assert_eq!(shown, "https://crm.example.org:8443/…");
    assert_eq!(url.redacted(), shown);
    let debug = format!("{url:?}");
    assert!(!debug.contains("s3cr3t") && !debug.contains("webhooks"), "{debug}");
    assert!(!shown.contains("token") && !shown.contains("webhooks"));

    let bare = EgressPolicy::strict().check_url("https://example.com").unwrap();
    assert_eq!(bare.to_string(), "https://example.com/");
    let query_only = EgressPolicy::strict().check_url("https://example.com/?k=v").unwrap();
    assert_eq!(query_only.to_string(), "https://example.com/…");
    let v6 = EgressPolicy::strict().check_url("https://[2606:4700::1]:8443/p").unwrap();
    assert_eq!(v6.to_string(), "https://[2606:4700::1]:8443/…");
}
