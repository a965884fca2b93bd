//! The connect-time half of the egress check: a DNS resolver for the client's connector that drops every address
//! the [`EgressPolicy`] does not allow.
//!
//! A webhook URL is checked when it is saved, but a name is only a promise: it can resolve to a private address
//! from the start, or to a public one when saved and to `127.0.0.1` or `169.254.169.254` later (DNS rebinding).
//! The connector connects to whatever its resolver returns, so the resolver is the one place where the answer that will
//! actually be used can be judged. [`EgressResolver`] asks a [`NameLookup`] for the addresses, keeps only those
//! that pass [`EgressPolicy::check_ip`] and fails with [`EgressBlocked`] when none remain, so no socket is ever
//! opened to a blocked address.
//!
//! IP-literal hosts never reach a resolver (hyper connects to them directly); they are covered by
//! [`EgressPolicy::check_url`] in [`Sender::send`](super::Sender::send).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use egress::{AddressClass, EgressPolicy};
use futures::future::BoxFuture;
use hyper_util::client::legacy::connect::dns::Name;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Where host names are resolved.
///
/// Production uses [`SystemLookup`] (the system resolver). Tests use [`StaticLookup`]: the external DNS is the
/// one thing a test may substitute; the egress check applied to the answer is
/// the same code either way.
pub trait NameLookup: Send + Sync + 'static {
    /// All addresses `host` resolves to. `port` is passed through to the system resolver (the connector
    /// replaces it with the URL's port anyway); only the addresses are used.
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<IpAddr>>>;
}

/// The system resolver: [`tokio::net::lookup_host`], i.e. `getaddrinfo` on a blocking thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl NameLookup for SystemLookup {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), port)).await?;
            let mut ips: Vec<IpAddr> = Vec::new();
            for addr in addrs {
                if !ips.contains(&addr.ip()) {
                    ips.push(addr.ip());
                }
            }
            Ok(ips)
        })
    }
}

/// A fixed name → addresses table, for tests. Names are matched case-insensitively; an unknown name fails with
/// [`io::ErrorKind::NotFound`], like a name that does not exist.
#[derive(Debug, Clone, Default)]
pub struct StaticLookup {
    table: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl StaticLookup {
    /// A lookup answering from `table` (keys are host names without port).
    pub fn new(table: HashMap<String, Vec<IpAddr>>) -> Self {
        let table = table.into_iter().map(|(name, ips)| (name.to_ascii_lowercase(), ips)).collect();
        Self { table: Arc::new(table) }
    }
}

impl NameLookup for StaticLookup {
    fn lookup(&self, host: &str, _port: u16) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        let answer = self.table.get(&host.to_ascii_lowercase()).cloned().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no such host: {host} (not in the static lookup table)"))
        });
        Box::pin(async move { answer })
    }
}

/// Most blocked addresses listed in [`EgressBlocked`]'s `Display`; the rest are counted.
const MAX_LISTED: usize = 8;

/// Every address a host name resolved to is blocked by the egress policy; no connection was attempted.
///
/// This is what [`EgressResolver`] fails with. It travels through the client's error chain as the source of
/// the connect error, where [`Sender::send`](super::Sender::send) finds it by downcasting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct EgressBlocked {
    /// The host name that was resolved.
    pub host: String,
    /// Every resolved address with the reason it is not allowed.
    pub addresses: Vec<(IpAddr, AddressClass)>,
}

impl fmt::Display for EgressBlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "egress: {} resolves only to blocked addresses: ", self.host)?;
        for (i, (ip, class)) in self.addresses.iter().take(MAX_LISTED).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{ip} ({class})")?;
        }
        if self.addresses.len() > MAX_LISTED {
            write!(f, " and {} more", self.addresses.len() - MAX_LISTED)?;
        }
        Ok(())
    }
}

/// The connector's DNS resolver for webhooks: [`NameLookup`] followed by [`EgressPolicy::check_ip`] on every
/// address. Cheap to clone (the connector clones it per connection).
#[derive(Clone)]
pub(crate) struct EgressResolver {
    policy: EgressPolicy,
    lookup: Arc<dyn NameLookup>,
}

impl EgressResolver {
    pub(crate) fn new(policy: EgressPolicy, lookup: Arc<dyn NameLookup>) -> Self {
        Self { policy, lookup }
    }

    /// Resolves `host` and keeps the allowed addresses, in the order the lookup returned them.
    ///
    /// # Errors
    ///
    /// The lookup's error, a `NotFound` error when the name has no address, or [`EgressBlocked`] when every
    /// address is blocked.
    pub(crate) fn allowed_addresses(
        &self,
        host: &str,
    ) -> impl std::future::Future<Output = Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
    {
        let policy = self.policy.clone();
        let host = host.to_owned();
        // Port 0: the connector sets the URL's (or the scheme's) port on every returned address.
        let lookup = self.lookup.lookup(&host, 0);
        async move {
            let resolved = lookup.await?;
            if resolved.is_empty() {
                return Err(io::Error::new(io::ErrorKind::NotFound, format!("{host} has no addresses")).into());
            }
            let mut allowed = Vec::with_capacity(resolved.len());
            let mut blocked = Vec::new();
            for ip in resolved {
                match policy.check_ip(ip) {
                    Ok(()) => allowed.push(ip),
                    Err(refused) => blocked.push((refused.ip, refused.class)),
                }
            }
            if allowed.is_empty() {
                return Err(EgressBlocked { host, addresses: blocked }.into());
            }
            if !blocked.is_empty() {
                tracing::debug!(%host, blocked = blocked.len(), "egress: dropped blocked addresses from DNS answer");
            }
            Ok(allowed)
        }
    }
}

/// The resolver as hyper-util's `HttpConnector` calls it: a service from a host name to socket addresses.
impl tower_service::Service<Name> for EgressResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let answer = self.allowed_addresses(name.as_str());
        Box::pin(async move {
            let allowed = answer.await?;
            Ok(allowed.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect::<Vec<_>>().into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn table(entries: &[(&str, &[IpAddr])]) -> Arc<dyn NameLookup> {
        Arc::new(StaticLookup::new(entries.iter().map(|(name, ips)| ((*name).to_owned(), ips.to_vec())).collect()))
    }

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(93, 184, 215, 14));

    #[tokio::test]
    async fn keeps_only_allowed_addresses() {
        let resolver = EgressResolver::new(
            EgressPolicy::strict(),
            table(&[("mixed.example", &[LOOPBACK, PUBLIC, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))])]),
        );
        let allowed = resolver.allowed_addresses("mixed.example").await.map_err(|e| e.to_string());
        assert_eq!(allowed, Ok(vec![PUBLIC]));
    }

    #[tokio::test]
    async fn all_blocked_is_egress_blocked() {
        let mapped = IpAddr::V6(Ipv4Addr::new(169, 254, 169, 254).to_ipv6_mapped());
        let resolver = EgressResolver::new(
            EgressPolicy::strict(),
            table(&[("crm.example.com", &[LOOPBACK, mapped, IpAddr::V6(Ipv6Addr::LOCALHOST)])]),
        );
        let Err(err) = resolver.allowed_addresses("CRM.example.com").await else {
            panic!("expected the lookup to be blocked");
        };
        let blocked = err.downcast_ref::<EgressBlocked>().cloned();
        assert_eq!(
            blocked.as_ref().map(ToString::to_string).as_deref(),
            Some(
                "egress: CRM.example.com resolves only to blocked addresses: 127.0.0.1 (loopback), \
                 ::ffff:169.254.169.254 (link-local), ::1 (loopback)"
            )
        );
    }

    #[tokio::test]
    async fn exempt_cidr_is_allowed() {
        let policy = EgressPolicy::from_settings(Some("true"), Some("127.0.0.0/8")).unwrap();
        let resolver = EgressResolver::new(policy, table(&[("rebind.example", &[LOOPBACK])]));
        let allowed = resolver.allowed_addresses("rebind.example").await.map_err(|e| e.to_string());
        assert_eq!(allowed, Ok(vec![LOOPBACK]));
    }

    #[tokio::test]
    async fn unknown_and_empty_names_are_not_found() {
        let resolver = EgressResolver::new(EgressPolicy::strict(), table(&[("empty.example", &[])]));
        for host in ["unknown.example", "empty.example"] {
            let Err(err) = resolver.allowed_addresses(host).await else {
                panic!("expected {host} to fail");
            };
            assert!(err.downcast_ref::<EgressBlocked>().is_none());
            assert_eq!(err.downcast_ref::<io::Error>().map(io::Error::kind), Some(io::ErrorKind::NotFound));
        }
    }

    #[test]
    fn long_lists_are_shortened() {
        let addresses = (1..=10).map(|i| (IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), AddressClass::Private)).collect();
        let text = EgressBlocked { host: "many.example".to_owned(), addresses }.to_string();
        assert!(text.ends_with("10.0.0.8 (private) and 2 more"), "{text}");
    }
}
