//! Partner webhooks as values: the event types, an endpoint's URL and subscription, its signing
//! secret, and the Standard Webhooks v1 signature (shared/PROTOCOLS.md). No I/O here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::Environment;

wire_enum! {
    /// What an event reports. `webhook.test` is sent only to the endpoint it tests.
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum EventType {
        UserCreated = "user.created",
        CipStatusChanged = "cip.status_changed",
        KycReviewed = "kyc.reviewed",
        AccountOpened = "account.opened",
        SubscriptionStatusChanged = "subscription.status_changed",
        InvoicePaid = "invoice.paid",
        InvoicePaymentFailed = "invoice.payment_failed",
        Test = "webhook.test",
    }
}

/// The types a partner may subscribe to (every type but the test event, which is sent only on
/// request, to one endpoint).
pub fn subscribable() -> impl Iterator<Item = EventType> {
    EventType::ALL.iter().copied().filter(|t| *t != EventType::Test)
}

/// An endpoint's subscription: every type, or a set of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Only(Vec<EventType>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFilter {
    #[error("`events` must not be empty (leave it out to receive every type)")]
    Empty,
    #[error(
        "`{0}` is not an event type; known types: user.created, cip.status_changed, kyc.reviewed, account.opened, subscription.status_changed, invoice.paid, invoice.payment_failed"
    )]
    Unknown(String),
}

impl EventFilter {
    /// `None` is every type; otherwise known, subscribable names (duplicates collapse).
    pub fn parse(raw: Option<&[String]>) -> Result<Self, InvalidFilter> {
        let Some(names) = raw else { return Ok(EventFilter::All) };
        if names.is_empty() {
            return Err(InvalidFilter::Empty);
        }
        let mut types = Vec::new();
        for name in names {
            match EventType::parse(name) {
                Some(t) if t != EventType::Test => {
                    if !types.contains(&t) {
                        types.push(t);
                    }
                }
                _ => return Err(InvalidFilter::Unknown(name.chars().take(64).collect())),
            }
        }
        types.sort_by_key(|t| t.as_str());
        Ok(EventFilter::Only(types))
    }

    /// As stored: NULL for every type, else `,a,b,` (the fan-out trigger matches `,type,`).
    pub fn to_column(&self) -> Option<String> {
        match self {
            EventFilter::All => None,
            EventFilter::Only(types) => {
                Some(format!(",{},", types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",")))
            }
        }
    }

    /// Back from the column; names this version does not know are dropped.
    pub fn from_column(column: Option<&str>) -> Self {
        match column {
            None => EventFilter::All,
            Some(list) => EventFilter::Only(list.split(',').filter_map(EventType::parse).collect()),
        }
    }

    /// The names as the API shows them; `None` for every type.
    pub fn names(&self) -> Option<Vec<&'static str>> {
        match self {
            EventFilter::All => None,
            EventFilter::Only(types) => Some(types.iter().map(|t| t.as_str()).collect()),
        }
    }
}

/// Where an endpoint receives events: an absolute `https` URL (or `http` for sandbox partners),
/// without credentials or a fragment, at most 2,048 characters. Where it may resolve to is
/// checked at each delivery (`webhooks::guard`), since DNS can change after it is saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(reqwest::Url);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUrl {
    #[error("`url` must be an absolute http(s) URL")]
    Malformed,
    #[error("`url` must use https for a live partner")]
    NeedsHttps,
    #[error("`url` must not carry a user name, password or fragment")]
    Credentials,
    #[error("`url` must be at most 2048 characters")]
    TooLong,
    #[error("`url` points at {0}, which webhooks may not reach")]
    Refused(&'static str),
}

impl EndpointUrl {
    pub fn parse(raw: &str, environment: Environment) -> Result<Self, InvalidUrl> {
        if raw.len() > 2048 {
            return Err(InvalidUrl::TooLong);
        }
        let url = reqwest::Url::parse(raw.trim()).map_err(|_| InvalidUrl::Malformed)?;
        if url.host().is_none() || !matches!(url.scheme(), "https" | "http") {
            return Err(InvalidUrl::Malformed);
        }
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err(InvalidUrl::Credentials);
        }
        if url.scheme() == "http" && environment == Environment::Live {
            return Err(InvalidUrl::NeedsHttps);
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }

    /// Refuses a URL whose host is an IP address `policy` does not allow (names are checked
    /// when resolved, at each delivery).
    pub fn allowed(self, policy: AddressPolicy) -> Result<Self, InvalidUrl> {
        let host = self.0.host_str().unwrap_or_default();
        let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() else {
            return Ok(self);
        };
        match policy.refuses(ip) {
            Some(why) => Err(InvalidUrl::Refused(why)),
            None => Ok(self),
        }
    }
}

/// An endpoint's signing secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks allows
/// 24–64). Shown to the partner once, then kept sealed.
pub struct SigningSecret(SecretString);

impl SigningSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(SecretString::from(format!("whsec_{}", BASE64.encode(bytes))))
    }

    /// A stored secret (opened from its sealed form); `None` when it is not `whsec_` + base64 of
    /// 24 to 64 bytes.
    pub fn parse(raw: SecretString) -> Option<Self> {
        let key = key_bytes(raw.expose_secret())?;
        (24..=64).contains(&key.len()).then_some(Self(raw))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = key_bytes(self.expose()).unwrap_or_default();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

fn key_bytes(secret: &str) -> Option<Vec<u8>> {
    BASE64.decode(secret.strip_prefix("whsec_")?).ok()
}

/// The `webhook-signature` header: one signature per valid secret, space-separated.
pub fn signature_header(secrets: &[&SigningSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| s.sign(id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// Which addresses deliveries may reach (SSRF, shared/PROTOCOLS.md): never link-local (cloud
/// metadata lives there), unspecified, multicast or reserved addresses; private ranges only for
/// sandbox partners; loopback only when the operator allows it (development, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    pub private: bool,
    pub loopback: bool,
}

impl AddressPolicy {
    pub fn for_partner(environment: Environment, allow_loopback: bool) -> Self {
        Self { private: environment == Environment::Sandbox, loopback: allow_loopback }
    }

    /// Why `ip` may not be reached, if it may not.
    pub fn refuses(self, ip: std::net::IpAddr) -> Option<&'static str> {
        match classify(ip) {
            AddressClass::Public => None,
            AddressClass::Loopback if self.loopback => None,
            AddressClass::Loopback => Some("a loopback address"),
            AddressClass::Private if self.private => None,
            AddressClass::Private => Some("a private address"),
            AddressClass::Forbidden(why) => Some(why),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressClass {
    Public,
    Loopback,
    Private,
    Forbidden(&'static str),
}

fn classify(ip: std::net::IpAddr) -> AddressClass {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            // IPv4 written as IPv6 (mapped, compatible, NAT64) is the IPv4 address it carries.
            let s = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            if s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
                return classify_v4(std::net::Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32));
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return classify_v4(std::net::Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32));
            }
            if v6.is_loopback() {
                AddressClass::Loopback
            } else if v6.is_unspecified() {
                AddressClass::Forbidden("the unspecified address")
            } else if s[0] & 0xffc0 == 0xfe80 {
                AddressClass::Forbidden("a link-local address")
            } else if v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                AddressClass::Forbidden("a cloud metadata address")
            } else if s[0] & 0xfe00 == 0xfc00 {
                AddressClass::Private
            } else if s[0] & 0xff00 == 0xff00 {
                AddressClass::Forbidden("a multicast address")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                AddressClass::Forbidden("a documentation address")
            } else {
                AddressClass::Public
            }
        }
    }
}

fn classify_v4(ip: std::net::Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (127, _, _) => AddressClass::Loopback,
        (169, 254, _) => AddressClass::Forbidden("a link-local address (cloud metadata)"),
        (0, _, _) => AddressClass::Forbidden("the unspecified network"),
        (10, _, _) | (192, 168, _) => AddressClass::Private,
        (172, b, _) if (16..32).contains(&b) => AddressClass::Private,
        // Carrier-grade NAT, IETF protocol assignments, benchmarking: not the public internet.
        (100, b, _) if (64..128).contains(&b) => AddressClass::Private,
        (192, 0, 0) => AddressClass::Private,
        (198, 18 | 19, _) => AddressClass::Private,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Forbidden("a documentation address"),
        (224..=255, _, _) => AddressClass::Forbidden("a multicast or reserved address"),
        _ => AddressClass::Public,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_partners_reach_public_addresses_only() {
        let live = AddressPolicy::for_partner(Environment::Live, false);
        for refused in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "100.64.0.1",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
            "255.255.255.255",
            "::",
        ] {
            assert!(live.refuses(refused.parse().unwrap()).is_some(), "{refused}");
        }
        for allowed in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "172.32.0.1"] {
            assert_eq!(live.refuses(allowed.parse().unwrap()), None, "{allowed}");
        }
    }

    #[test]
    fn sandbox_partners_reach_private_networks_and_loopback_only_when_allowed() {
        let sandbox = AddressPolicy::for_partner(Environment::Sandbox, false);
        assert_eq!(sandbox.refuses("10.0.0.1".parse().unwrap()), None);
        assert!(sandbox.refuses("127.0.0.1".parse().unwrap()).is_some());
        assert!(sandbox.refuses("169.254.169.254".parse().unwrap()).is_some());
        let dev = AddressPolicy::for_partner(Environment::Sandbox, true);
        assert_eq!(dev.refuses("127.0.0.1".parse().unwrap()), None);
        assert_eq!(dev.refuses("::1".parse().unwrap()), None);
        assert!(dev.refuses("fd00:ec2::254".parse().unwrap()).is_some());
        let live_dev = AddressPolicy::for_partner(Environment::Live, true);
        assert_eq!(live_dev.refuses("127.0.0.1".parse().unwrap()), None);
        assert!(live_dev.refuses("10.0.0.1".parse().unwrap()).is_some());
    }

    #[test]
    fn signs_as_the_standard_webhooks_reference_does() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = SigningSecret::parse(SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn generated_secrets_are_32_random_bytes() {
        let (a, b) = (SigningSecret::generate(), SigningSecret::generate());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(key_bytes(a.expose()).unwrap().len(), 32);
        assert!(SigningSecret::parse(SecretString::from(a.expose().to_owned())).is_some());
        assert!(SigningSecret::parse(SecretString::from("whsec_c2hvcnQ=")).is_none());
        assert!(SigningSecret::parse(SecretString::from("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).is_none());
    }

    #[test]
    fn filters_round_trip_through_the_column() {
        let names = vec!["kyc.reviewed".to_owned(), "user.created".to_owned(), "user.created".to_owned()];
        let filter = EventFilter::parse(Some(&names)).unwrap();
        assert_eq!(filter.to_column().as_deref(), Some(",kyc.reviewed,user.created,"));
        assert_eq!(EventFilter::from_column(filter.to_column().as_deref()), filter);
        assert_eq!(EventFilter::parse(None).unwrap().to_column(), None);
        assert_eq!(EventFilter::parse(Some(&[])), Err(InvalidFilter::Empty));
        assert!(matches!(EventFilter::parse(Some(&["webhook.test".into()])), Err(InvalidFilter::Unknown(_))));
        assert!(matches!(EventFilter::parse(Some(&["user.*".into()])), Err(InvalidFilter::Unknown(_))));
    }

    #[test]
    fn urls_are_absolute_https_for_live_partners() {
        assert!(EndpointUrl::parse("https://example.com/hooks", Environment::Live).is_ok());
        assert_eq!(EndpointUrl::parse("http://example.com/hooks", Environment::Live), Err(InvalidUrl::NeedsHttps));
        assert!(EndpointUrl::parse("http://127.0.0.1:9000/hooks", Environment::Sandbox).is_ok());
        assert_eq!(EndpointUrl::parse("ftp://example.com", Environment::Sandbox), Err(InvalidUrl::Malformed));
        assert_eq!(EndpointUrl::parse("/hooks", Environment::Sandbox), Err(InvalidUrl::Malformed));
        assert_eq!(EndpointUrl::parse("https://u:p@example.com", Environment::Live), Err(InvalidUrl::Credentials));
        assert_eq!(EndpointUrl::parse("https://example.com/#x", Environment::Live), Err(InvalidUrl::Credentials));
    }
}
