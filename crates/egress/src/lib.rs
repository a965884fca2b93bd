//! Egress policy for outbound webhooks.
//!
//! Workspaces configure webhook URLs that this service then calls. Without
//! a policy that is a server-side request forgery (SSRF) hole: a tenant
//! could point a webhook at `127.0.0.1`, a database on the private network,
//! or the cloud metadata endpoint `169.254.169.254` and have us fetch it.
//! This crate owns the single definition of "where may a webhook go" and
//! exposes it in two halves that share one implementation:
//!
//! 1. **Write time** — [`EgressPolicy::check_url`] validates a URL when it
//!    is saved: https only (http only if configured), no credentials, no
//!    fragment, no non-public IP literal in any spelling (decimal, octal,
//!    hex, IPv4-mapped IPv6, NAT64, 6to4, ...), no `localhost` or
//!    internal-only names. Users get an immediate, readable error.
//! 2. **Connect time** — [`EgressPolicy::check_ip`] must be applied to
//!    *every* address the host resolves to, right before connecting (the
//!    HTTP client's DNS resolver calls it). The write-time check alone is
//!    not enough: a public name may resolve to a private address, or
//!    resolve to a public one when saved and a private one later (DNS
//!    rebinding). Checking the resolved addresses closes that gap.
//!
//! Exemptions (`CRM_EGRESS_ALLOW_CIDRS`) lift the address rules for the
//! listed networks only, e.g. `127.0.0.0/8` for tests that run receivers on
//! loopback; name rules stay in force except that `localhost` is accepted
//! when loopback is exempt.
//!
//! The crate is synchronous and does no I/O (besides
//! [`EgressPolicy::from_env`] reading two variables).

mod address;
mod policy;
mod webhook_url;

pub use address::{classify, AddressClass, BlockedAddress};
pub use policy::{EgressPolicy, PolicyConfigError, ALLOW_CIDRS_VAR, ALLOW_HTTP_VAR};
pub use webhook_url::{UrlRejection, WebhookUrl, MAX_URL_LEN};
