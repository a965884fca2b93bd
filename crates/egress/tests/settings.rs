//! Parsing of CRM_EGRESS_ALLOW_HTTP / CRM_EGRESS_ALLOW_CIDRS.

use egress::{EgressPolicy, ALLOW_CIDRS_VAR, ALLOW_HTTP_VAR};
use ipnet::IpNet;

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn defaults_are_strict() {
    assert_eq!(EgressPolicy::default(), EgressPolicy::strict());
    let strict = EgressPolicy::strict();
    assert!(!strict.allows_http());
    assert!(strict.allow_cidrs().is_empty());
    for (http, cidrs) in [(None, None), (Some(""), Some("")), (Some("  "), Some(" , ,"))] {
        assert_eq!(EgressPolicy::from_settings(http, cidrs), Ok(EgressPolicy::strict()));
    }
}

#[test]
fn allow_http_values() {
    for (raw, expected) in [
        ("true", true),
        ("1", true),
        ("TRUE", true),
        (" true ", true),
        ("false", false),
        ("0", false),
        ("False", false),
    ] {
        let policy = EgressPolicy::from_settings(Some(raw), None).unwrap();
        assert_eq!(policy.allows_http(), expected, "{raw:?}");
    }
}

#[test]
fn allow_http_error_names_the_variable() {
    let err = EgressPolicy::from_settings(Some("yes please"), None).unwrap_err();
    assert_eq!(err.variable(), ALLOW_HTTP_VAR);
    assert_eq!(err.value(), "yes please");
    assert_eq!(err.to_string(), "CRM_EGRESS_ALLOW_HTTP: `yes please` is not a boolean (expected true, false, 1 or 0)");
}

#[test]
fn allow_cidrs_list() {
    let policy =
        EgressPolicy::from_settings(Some("1"), Some(" 127.0.0.0/8, 10.1.2.3 ,::1,fd00::/8 ,192.168.1.77/24,")).unwrap();
    assert!(policy.allows_http());
    assert_eq!(policy.allow_cidrs(), nets(&["127.0.0.0/8", "10.1.2.3/32", "::1/128", "fd00::/8", "192.168.1.0/24"]));
}

#[test]
fn allow_cidrs_error_names_the_variable_and_entry() {
    let err = EgressPolicy::from_settings(None, Some("127.0.0.0/8, foo")).unwrap_err();
    assert_eq!(err.variable(), ALLOW_CIDRS_VAR);
    assert_eq!(err.to_string(), "CRM_EGRESS_ALLOW_CIDRS: `foo` is not a CIDR");

    for bad in ["10.0.0.0/33", "10.0.0/8", "::1/129", "10.0.0.0/", "localhost", "10.0.0.0 /8"] {
        let err = EgressPolicy::from_settings(None, Some(bad)).unwrap_err();
        assert_eq!(err.variable(), ALLOW_CIDRS_VAR, "{bad:?}");
        assert_eq!(err.value(), bad);
    }
}
