//! SSRF protection for webhook deliveries. The HTTP client resolves names through
//! `GuardedResolver`, which resolves, checks every address against the partner's policy, and
//! answers only when all pass: the connection is then made to one of exactly the addresses
//! checked (no second lookup an attacker's DNS could answer differently). URLs whose host is an
//! IP address are not resolved at all, so `literal_refusal` checks those before sending.
//!
//! Written here because reqwest's resolver hook is the place to pin the connection; no crate
//! does the checking (the ranges are in `domain::webhook::AddressPolicy`).

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::webhook::AddressPolicy;

/// A name that resolved to an address the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {why} ({ip})")]
pub struct Refused {
    pub host: String,
    pub ip: IpAddr,
    pub why: &'static str,
}

pub struct GuardedResolver {
    policy: AddressPolicy,
}

impl GuardedResolver {
    pub fn new(policy: AddressPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some((ip, why)) = addrs.iter().find_map(|a| policy.refuses(a.ip()).map(|why| (a.ip(), why))) {
                return Err(Box::new(Refused { host, ip, why }) as Box<dyn std::error::Error + Send + Sync>);
            }
            if addrs.is_empty() {
                return Err(format!("{host} has no addresses").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Why the URL's host, when it is an IP address, may not be reached.
pub fn literal_refusal(url: &str, policy: AddressPolicy) -> Option<&'static str> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?;
    let ip: IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    policy.refuses(ip)
}

/// The refusal somewhere in a failed request's chain of causes, if that is why it failed.
pub fn refusal_in(err: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused.to_string());
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Environment;

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_unless_allowed() {
        let live = GuardedResolver::new(AddressPolicy::for_partner(Environment::Live, false));
        let err = match live.resolve("localhost".parse().unwrap()).await {
            Err(err) => err,
            Ok(_) => panic!("localhost must be refused"),
        };
        let refused = err.downcast_ref::<Refused>().expect("a refusal");
        assert!(refused.ip.is_loopback(), "{refused}");
        let dev = GuardedResolver::new(AddressPolicy::for_partner(Environment::Live, true));
        assert!(dev.resolve("localhost".parse().unwrap()).await.is_ok());
    }

    #[test]
    fn literal_addresses_are_checked_before_sending() {
        let live = AddressPolicy::for_partner(Environment::Live, false);
        assert!(literal_refusal("https://169.254.169.254/latest", live).is_some());
        assert!(literal_refusal("https://[::1]:8443/", live).is_some());
        assert!(literal_refusal("https://example.com/", live).is_none());
    }
}
