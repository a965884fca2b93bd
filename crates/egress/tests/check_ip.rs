//! Connect-time checks: every address class, embedded IPv4 forms and the
//! allow-list.

use std::net::IpAddr;

use egress::{classify, AddressClass, BlockedAddress, EgressPolicy};

use AddressClass::*;

/// (address, expected class)
const BLOCKED: &[(&str, AddressClass)] = &[
    ("0.0.0.0", Unspecified),
    ("0.1.2.3", Unspecified),
    ("::", Unspecified),
    ("127.0.0.1", Loopback),
    ("127.255.255.254", Loopback),
    ("::1", Loopback),
    ("10.0.0.1", Private),
    ("10.255.255.255", Private),
    ("172.16.0.1", Private),
    ("172.31.255.255", Private),
    ("192.168.0.1", Private),
    ("169.254.0.1", LinkLocal),
    ("169.254.169.254", LinkLocal),
    ("fe80::1", LinkLocal),
    ("febf::1", LinkLocal),
    ("fc00::1", UniqueLocal),
    ("fdff:ffff::1", UniqueLocal),
    ("fec0::1", SiteLocal),
    ("100.64.0.1", SharedCgnat),
    ("100.127.255.255", SharedCgnat),
    ("224.0.0.1", Multicast),
    ("239.255.255.250", Multicast),
    ("ff02::1", Multicast),
    ("ff0e::1", Multicast),
    ("255.255.255.255", Broadcast),
    ("240.0.0.1", Reserved),
    ("255.255.255.254", Reserved),
    ("2001::1", Reserved),                 // Teredo
    ("::8.8.8.8", Reserved),               // IPv4-compatible (deprecated)
    ("::ffff:0:808:808", Reserved),        // IPv4-translated (deprecated)
    ("64:ff9b:0:0:1::808:808", Reserved),  // 64:ff9b::/32 outside the /96
    ("64:ff9b:2::808:808", Reserved),      // just past the local-use /48
    ("64:ff9b:0:ffff::808:808", Reserved), // just before the local-use /48
    ("4000::1", Reserved),                 // outside 2000::/3
    ("5f00::1", Reserved),
    ("192.0.2.1", Documentation),
    ("198.51.100.7", Documentation),
    ("203.0.113.200", Documentation),
    ("2001:db8::1", Documentation),
    ("3fff::1", Documentation),
    ("198.18.0.1", Benchmarking),
    ("198.19.255.255", Benchmarking),
    ("2001:2::1", Benchmarking),
    ("192.0.0.1", ProtocolAssignment),
    ("2001:100::1", ProtocolAssignment),
    ("192.88.99.1", Relay6to4),
    ("100::1", Discard),
    ("100:0:0:1::1", Reserved),
    // Local-use NAT64 (RFC 8215): blocked whatever it embeds and in any
    // layout, since the translator is on someone's private network.
    ("64:ff9b:1::", LocalUseNat64),
    ("64:ff9b:1::808:808", LocalUseNat64),    // /96 layout of 8.8.8.8
    ("64:ff9b:1::101:101", LocalUseNat64),    // /96 layout of 1.1.1.1
    ("64:ff9b:1:808:8:800::", LocalUseNat64), // /48 layout of 8.8.8.8
    ("64:ff9b:1:1::808:808", LocalUseNat64),
    ("64:ff9b:1::a00:1", LocalUseNat64),  // /96 layout of 10.0.0.1
    ("64:ff9b:1::7f00:1", LocalUseNat64), // /96 layout of 127.0.0.1
    ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", LocalUseNat64),
    // Embedded IPv4 judged as that IPv4.
    ("::ffff:127.0.0.1", Loopback),
    ("::ffff:10.0.0.1", Private),
    ("::ffff:169.254.169.254", LinkLocal),
    ("::127.0.0.1", Loopback),
    ("::10.0.0.1", Private),
    ("64:ff9b::7f00:1", Loopback),
    ("64:ff9b::a00:1", Private),
    ("64:ff9b::a9fe:a9fe", LinkLocal),
    ("64:ff9b::c000:201", Documentation),
    ("64:ff9b::ffff:ffff", Broadcast),
    ("64:ff9b::", Unspecified),
    ("2002:7f00:1::", Loopback),
    ("2002:c0a8:101::1", Private),
    ("2002:e000:1::", Multicast),
];

const PUBLIC: &[&str] = &[
    "8.8.8.8",
    "1.1.1.1",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.255",
    "192.0.3.0",
    "192.167.255.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "64:ff9b::101:101",
    "2002:808:808::1",
    "2001:200::1",
];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn every_blocked_class_is_reported() {
    let policy = EgressPolicy::strict();
    for &(addr, class) in BLOCKED {
        let addr = ip(addr);
        assert_eq!(classify(addr), Some(class), "{addr}");
        assert_eq!(policy.check_ip(addr), Err(BlockedAddress { ip: addr, class }), "{addr}");
    }
}

#[test]
fn public_addresses_are_allowed() {
    let policy = EgressPolicy::strict();
    for &addr in PUBLIC {
        assert_eq!(classify(ip(addr)), None, "{addr}");
        assert_eq!(policy.check_ip(ip(addr)), Ok(()), "{addr}");
    }
}

#[test]
fn every_class_has_a_lowercase_name() {
    let classes = [
        Unspecified,
        Loopback,
        Private,
        LinkLocal,
        UniqueLocal,
        SiteLocal,
        SharedCgnat,
        Multicast,
        Broadcast,
        Reserved,
        Documentation,
        Benchmarking,
        ProtocolAssignment,
        Relay6to4,
        Discard,
        LocalUseNat64,
    ];
    for class in classes {
        assert!(BLOCKED.iter().any(|&(_, c)| c == class), "{class:?} untested");
        let name = class.to_string();
        assert_eq!(name, name.to_lowercase());
        assert_eq!(name, class.as_str());
    }
}

#[test]
fn blocked_address_display() {
    let err = EgressPolicy::strict().check_ip(ip("127.0.0.1")).unwrap_err();
    assert_eq!(err.to_string(), "address 127.0.0.1 is loopback and not allowed");
    let err = EgressPolicy::strict().check_ip(ip("fd00::1")).unwrap_err();
    assert_eq!(err.to_string(), "address fd00::1 is unique-local and not allowed");
}

#[test]
fn allow_cidrs_exempt_addresses() {
    let policy = EgressPolicy::new(false, vec!["127.0.0.0/8".parse().unwrap(), "fd00:1::/32".parse().unwrap()]);
    assert_eq!(policy.check_ip(ip("127.0.0.1")), Ok(()));
    assert_eq!(policy.check_ip(ip("127.9.9.9")), Ok(()));
    assert_eq!(policy.check_ip(ip("fd00:1::5")), Ok(()));
    assert!(policy.check_ip(ip("fd00:2::5")).is_err());
    assert!(policy.check_ip(ip("10.0.0.1")).is_err());
    assert!(policy.check_ip(ip("::1")).is_err());
    // The IPv4-mapped spelling of an exempt IPv4 is exempt too ...
    assert_eq!(policy.check_ip(ip("::ffff:127.0.0.1")), Ok(()));
    // ... but NAT64 / 6to4 forms are not the same destination.
    assert!(policy.check_ip(ip("64:ff9b::7f00:1")).is_err());
    assert!(policy.check_ip(ip("2002:7f00:1::")).is_err());
}

#[test]
fn mapped_allow_entry_exempts_plain_ipv4() {
    let policy = EgressPolicy::new(false, vec!["::ffff:10.0.0.0/104".parse().unwrap()]);
    assert_eq!(policy.check_ip(ip("10.1.2.3")), Ok(()));
    assert_eq!(policy.check_ip(ip("::ffff:10.1.2.3")), Ok(()));
    assert!(policy.check_ip(ip("192.168.0.1")).is_err());
}
