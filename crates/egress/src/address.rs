//! Classification of IP addresses into "public" and the special-purpose
//! ranges a webhook must never reach.
//!
//! The tables follow the IANA IPv4 and IPv6 Special-Purpose Address
//! Registries (RFC 6890 and successors). For IPv6 only `2000::/3` is treated
//! as global unicast; everything outside it that is not named below is
//! [`AddressClass::Reserved`]. IPv6 forms that carry an IPv4 address
//! (IPv4-mapped, IPv4-compatible, well-known NAT64 `64:ff9b::/96`, 6to4) are
//! judged by that IPv4 address, so `[::ffff:127.0.0.1]` is loopback and
//! `[::ffff:8.8.8.8]` is public. The local-use NAT64 prefix
//! `64:ff9b:1::/48` is the exception: it is blocked whatever it embeds.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not publicly routable.
///
/// [`classify`] returns `None` for public (globally routable) addresses and
/// one of these classes for everything else. `Display` gives lowercase words
/// that read naturally in "address X is {class} and not allowed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddressClass {
    /// `0.0.0.0/8` ("this network") and `::`.
    Unspecified,
    /// `127.0.0.0/8` and `::1`.
    Loopback,
    /// RFC 1918: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// `169.254.0.0/16` (includes cloud metadata `169.254.169.254`) and `fe80::/10`.
    LinkLocal,
    /// IPv6 unique local addresses, `fc00::/7`.
    UniqueLocal,
    /// Deprecated IPv6 site-local addresses, `fec0::/10`.
    SiteLocal,
    /// Shared address space for carrier-grade NAT, `100.64.0.0/10`.
    SharedCgnat,
    /// `224.0.0.0/4` and `ff00::/8`.
    Multicast,
    /// Limited broadcast, `255.255.255.255`.
    Broadcast,
    /// Reserved or unallocated space: `240.0.0.0/4`, IPv6 outside `2000::/3`,
    /// Teredo `2001::/32`, IPv4-compatible and IPv4-translated IPv6 forms.
    Reserved,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15` and `2001:2::/48`.
    Benchmarking,
    /// IETF protocol assignments: `192.0.0.0/24` and the rest of `2001::/23`.
    ProtocolAssignment,
    /// Deprecated 6to4 relay anycast, `192.88.99.0/24`.
    Relay6to4,
    /// IPv6 discard-only prefix, `100::/64`.
    Discard,
    /// Local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215), whatever IPv4
    /// address it embeds.
    LocalUseNat64,
}

impl AddressClass {
    /// Lowercase words describing the class, as used by `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::UniqueLocal => "unique-local",
            Self::SiteLocal => "site-local",
            Self::SharedCgnat => "shared (carrier-grade nat)",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::ProtocolAssignment => "ietf protocol assignment",
            Self::Relay6to4 => "6to4 relay anycast",
            Self::Discard => "discard-only",
            Self::LocalUseNat64 => "local-use nat64",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address refused by [`EgressPolicy::check_ip`](crate::EgressPolicy::check_ip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("address {ip} is {class} and not allowed")]
pub struct BlockedAddress {
    /// The address as it was checked (not the embedded IPv4, if any).
    pub ip: IpAddr,
    /// Why it is not public.
    pub class: AddressClass,
}

/// Classifies `ip`: `None` means public / globally routable, `Some(class)`
/// names the special-purpose range it belongs to.
///
/// This ignores any policy exemptions; see
/// [`EgressPolicy::check_ip`](crate::EgressPolicy::check_ip) for that.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// `(network, prefix length, class)`; first match wins, so the broadcast
/// address comes before the reserved `/4` that contains it.
#[rustfmt::skip]
const V4_RANGES: &[(Ipv4Addr, u32, AddressClass)] = &[
    (Ipv4Addr::UNSPECIFIED,              8, AddressClass::Unspecified),
    (Ipv4Addr::new(10, 0, 0, 0),         8, AddressClass::Private),
    (Ipv4Addr::new(100, 64, 0, 0),      10, AddressClass::SharedCgnat),
    (Ipv4Addr::new(127, 0, 0, 0),        8, AddressClass::Loopback),
    (Ipv4Addr::new(169, 254, 0, 0),     16, AddressClass::LinkLocal),
    (Ipv4Addr::new(172, 16, 0, 0),      12, AddressClass::Private),
    (Ipv4Addr::new(192, 0, 0, 0),       24, AddressClass::ProtocolAssignment),
    (Ipv4Addr::new(192, 0, 2, 0),       24, AddressClass::Documentation),
    (Ipv4Addr::new(192, 88, 99, 0),     24, AddressClass::Relay6to4),
    (Ipv4Addr::new(192, 168, 0, 0),     16, AddressClass::Private),
    (Ipv4Addr::new(198, 18, 0, 0),      15, AddressClass::Benchmarking),
    (Ipv4Addr::new(198, 51, 100, 0),    24, AddressClass::Documentation),
    (Ipv4Addr::new(203, 0, 113, 0),     24, AddressClass::Documentation),
    (Ipv4Addr::new(224, 0, 0, 0),        4, AddressClass::Multicast),
    (Ipv4Addr::BROADCAST,               32, AddressClass::Broadcast),
    (Ipv4Addr::new(240, 0, 0, 0),        4, AddressClass::Reserved),
];

/// Same as [`V4_RANGES`] for IPv6 ranges that carry no embedded IPv4.
/// Checked after the embedded-IPv4 forms; first match wins.
#[rustfmt::skip]
const V6_RANGES: &[(Ipv6Addr, u32, AddressClass)] = &[
    // Local-use NAT64 (RFC 8215) is not globally reachable: its translator
    // belongs to whichever network we sit in and may reach that network's
    // private IPv4 space whatever the embedded address says. The operator
    // also picks the prefix length (/48 to /96), so there is no single place
    // to read an IPv4 address from. Block the whole /48; it sits inside
    // `::/8` below, so it must come first.
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, AddressClass::LocalUseNat64),
    (Ipv6Addr::UNSPECIFIED,                          8, AddressClass::Reserved),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),     64, AddressClass::Discard),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),      8, AddressClass::Reserved),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, AddressClass::Documentation),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),    20, AddressClass::Documentation),
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),    48, AddressClass::Benchmarking),
    // Teredo: the embedded server and (obfuscated) client IPv4 are not a
    // destination we can judge, so block the prefix outright.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),    32, AddressClass::Reserved),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),    23, AddressClass::ProtocolAssignment),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),     7, AddressClass::UniqueLocal),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),    10, AddressClass::LinkLocal),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),    10, AddressClass::SiteLocal),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),     8, AddressClass::Multicast),
];

fn v4_in(ip: Ipv4Addr, net: Ipv4Addr, len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn v6_in(ip: Ipv6Addr, net: Ipv6Addr, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    V4_RANGES.iter().find(|(net, len, _)| v4_in(ip, *net, *len)).map(|(_, _, class)| *class)
}

/// The low 32 bits of an IPv6 address as IPv4.
fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    // Truncation to the low 32 bits is the point.
    #[allow(clippy::cast_possible_truncation)]
    Ipv4Addr::from(u128::from(ip) as u32)
}

/// Where an IPv6 address embeds an IPv4 address, and how to judge it.
enum Embedded {
    /// Judge exactly like the IPv4 address (mapped, NAT64, 6to4).
    SameAs(Ipv4Addr),
    /// Deprecated forms: the IPv4 class if it is not public, otherwise
    /// [`AddressClass::Reserved`] — never allowed.
    Deprecated(Ipv4Addr),
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Embedded> {
    let bits = u128::from(ip);
    if let Some(v4) = ip.to_ipv4_mapped() {
        // ::ffff:0:0/96
        return Some(Embedded::SameAs(v4));
    }
    if ip.is_unspecified() || ip.is_loopback() {
        return None;
    }
    // IPv4-compatible ::a.b.c.d (::/96) and IPv4-translated
    // ::ffff:0:a.b.c.d (::ffff:0:0:0/96), both deprecated.
    if v6_in(ip, Ipv6Addr::UNSPECIFIED, 96) || v6_in(ip, Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96) {
        return Some(Embedded::Deprecated(low_v4(ip)));
    }
    // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052). It is globally
    // reachable and may only carry global IPv4 addresses, so judging it by
    // the embedded IPv4 is exact. The rest of 64:ff9b::/32 (other than the
    // local-use /48, blocked in V6_RANGES) is unassigned and ends up
    // reserved via `::/8`.
    if v6_in(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return Some(Embedded::SameAs(low_v4(ip)));
    }
    // 6to4 2002:AABB:CCDD::/48 carries the IPv4 in bits 16..48.
    if v6_in(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        #[allow(clippy::cast_possible_truncation)]
        let v4 = Ipv4Addr::from((bits >> 80) as u32);
        return Some(Embedded::SameAs(v4));
    }
    None
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    if ip.is_unspecified() {
        return Some(AddressClass::Unspecified);
    }
    if ip.is_loopback() {
        return Some(AddressClass::Loopback);
    }
    match embedded_v4(ip) {
        Some(Embedded::SameAs(v4)) => return classify_v4(v4),
        Some(Embedded::Deprecated(v4)) => return Some(classify_v4(v4).unwrap_or(AddressClass::Reserved)),
        None => {}
    }
    if let Some((_, _, class)) = V6_RANGES.iter().find(|(net, len, _)| v6_in(ip, *net, *len)) {
        return Some(*class);
    }
    // Only 2000::/3 is allocated for global unicast.
    if v6_in(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
        None
    } else {
        Some(AddressClass::Reserved)
    }
}

/// The other spelling of the same destination on a dual-stack socket:
/// `::ffff:a.b.c.d` for `a.b.c.d` and vice versa. Used for allow-list
/// membership so an exemption written in either family covers both.
pub(crate) fn dual_stack_alias(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_edges() {
        let ip = Ipv4Addr::new(1, 2, 3, 4);
        assert!(v4_in(ip, Ipv4Addr::UNSPECIFIED, 0));
        assert!(v4_in(ip, ip, 32));
        assert!(!v4_in(ip, Ipv4Addr::new(1, 2, 3, 5), 32));
        let ip6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        assert!(v6_in(ip6, Ipv6Addr::UNSPECIFIED, 0));
        assert!(v6_in(ip6, ip6, 128));
        assert!(!v6_in(ip6, Ipv6Addr::LOCALHOST, 128));
    }

    #[test]
    fn six_to_four_extracts_bits_16_to_48() {
        let ip = Ipv6Addr::new(0x2002, 0x0a0b, 0x0c0d, 0xffff, 0, 0, 0, 1);
        assert!(matches!(
            embedded_v4(ip),
            Some(Embedded::SameAs(v4)) if v4 == Ipv4Addr::new(10, 11, 12, 13)
        ));
    }

    #[test]
    fn dual_stack_alias_both_ways() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let v6: IpAddr = "::ffff:10.0.0.1".parse().unwrap_or(v4);
        assert_eq!(dual_stack_alias(v4), Some(v6));
        assert_eq!(dual_stack_alias(v6), Some(v4));
        assert_eq!(dual_stack_alias(IpAddr::V6(Ipv6Addr::LOCALHOST)), None);
    }
}
