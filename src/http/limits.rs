//! Abuse limits of the public sign-up routes (DESIGN.md §6): per client IP, per partner and per
//! e-mail address, each its own GCRA bucket (governor), so one client's requests only ever
//! spend its own quota. The buckets live in this node's memory: with N nodes behind a balancer
//! the effective limits are up to N times these (the per-address code-attempt limit, which is
//! what protects accounts, is enforced by the database and holds across nodes).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::core::signup::SignupSettings;
use crate::domain::{Email, PartnerId};

pub struct SignupLimits {
    ip: DefaultKeyedRateLimiter<IpAddr>,
    partner: DefaultKeyedRateLimiter<i64>,
    email: DefaultKeyedRateLimiter<(i64, String)>,
    trust_forwarded_for: bool,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least one"))
}

fn limited(detail: &'static str, wait: std::time::Duration) -> ApiError {
    ApiError::TooManyRequests { detail, retry_after_secs: wait.as_secs().max(1) }
}

impl SignupLimits {
    pub fn new(settings: &SignupSettings) -> Self {
        Self {
            ip: RateLimiter::keyed(per_minute(settings.per_ip_per_minute)),
            partner: RateLimiter::keyed(per_minute(settings.per_partner_per_minute)),
            email: RateLimiter::keyed(per_minute(settings.per_email_per_minute)),
            trust_forwarded_for: settings.trust_forwarded_for,
        }
    }

    /// The client's address: the peer, or with `signup.trust_forwarded_for` the last
    /// `X-Forwarded-For` hop (the one the proxy in front of us appended; earlier hops are
    /// whatever the client claimed).
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<&ConnectInfo<SocketAddr>>) -> Option<IpAddr> {
        if self.trust_forwarded_for
            && let Some(ip) = headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
        {
            return Some(ip);
        }
        peer.map(|ConnectInfo(addr)| addr.ip())
    }

    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = ip else { return Ok(()) };
        self.ip.check_key(&ip).map_err(|n| {
            limited(
                "Too many requests from this address; retry later.",
                n.wait_time_from(DefaultClock::default().now()),
            )
        })
    }

    pub fn check_partner(&self, partner: PartnerId) -> Result<(), ApiError> {
        self.partner.check_key(&partner.get()).map_err(|n| {
            limited("Too many sign-ups for this partner; retry later.", n.wait_time_from(DefaultClock::default().now()))
        })
    }

    pub fn check_email(&self, partner: PartnerId, email: &Email) -> Result<(), ApiError> {
        self.email.check_key(&(partner.get(), email.key())).map_err(|n| {
            limited(
                "Too many requests for this e-mail address; retry later.",
                n.wait_time_from(DefaultClock::default().now()),
            )
        })
    }

    /// Forgets buckets that are full again (called periodically; keeps memory bounded).
    pub fn retain_recent(&self) {
        self.ip.retain_recent();
        self.partner.retain_recent();
        self.email.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_ip: u32, per_email: u32) -> SignupLimits {
        SignupLimits::new(&SignupSettings {
            per_ip_per_minute: per_ip,
            per_email_per_minute: per_email,
            trust_forwarded_for: true,
            ..SignupSettings::default()
        })
    }

    #[test]
    fn each_key_has_its_own_bucket() {
        let limits = limits(2, 1);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(limits.check_ip(Some(a)).is_ok() && limits.check_ip(Some(a)).is_ok());
        let err = limits.check_ip(Some(a)).unwrap_err();
        assert!(
            matches!(err, ApiError::TooManyRequests { retry_after_secs, .. } if (1..=60).contains(&retry_after_secs))
        );
        assert!(limits.check_ip(Some(b)).is_ok(), "another address keeps its quota");
        let partner = PartnerId::new(1).unwrap();
        let (x, y) = (Email::parse("x@example.org").unwrap(), Email::parse("y@example.org").unwrap());
        assert!(limits.check_email(partner, &x).is_ok());
        assert!(limits.check_email(partner, &Email::parse("X@Example.org").unwrap()).is_err(), "case-insensitive");
        assert!(limits.check_email(partner, &y).is_ok());
        assert!(limits.check_email(PartnerId::new(2).unwrap(), &x).is_ok(), "per partner");
    }

    #[test]
    fn forwarded_for_is_trusted_only_when_configured() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.2.3.4, 10.9.8.7".parse().unwrap());
        let peer = ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5000)));
        assert_eq!(limits(1, 1).client_ip(&headers, Some(&peer)), Some("10.9.8.7".parse().unwrap()));
        let untrusting = SignupLimits::new(&SignupSettings::default());
        assert_eq!(untrusting.client_ip(&headers, Some(&peer)), Some("127.0.0.1".parse().unwrap()));
    }
}
