//! Partner credentials: API keys and OAuth client secrets.
//!
//! Both are 256-bit random values, so they are stored as SHA-256 digests rather than with a slow
//! password hash: brute-forcing a 256-bit secret is hopeless whatever the hash, and a 40 ms Argon2
//! on every API call would cap the service at ~50 requests/s. Digests are compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::Environment;

pub type SecretHash = [u8; 32];

pub fn hash_secret(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time equality of two digests.
pub fn digests_match(stored: &[u8], presented: &SecretHash) -> bool {
    stored.len() == presented.len() && bool::from(stored.ct_eq(presented))
}

pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A newly made API key: the full key is shown once, only `id` and `hash` are stored.
pub struct NewApiKey {
    pub id: String,
    pub key: SecretString,
    pub hash: SecretHash,
}

/// `StoredSecret` for a generated secret: its lookup id is the field named, its digest `hash`.
macro_rules! stored_secret {
    ($type:ty, $id:ident) => {
        impl $crate::domain::credentials::StoredSecret for $type {
            fn id(&self) -> &str {
                &self.$id
            }

            fn hash(&self) -> &$crate::auth::credentials::SecretHash {
                &self.hash
            }
        }
    };
}
pub(crate) use stored_secret;

stored_secret!(NewApiKey, id);

impl NewApiKey {
    pub fn generate(environment: Environment) -> Self {
        let id = random_hex(8);
        let key = format!("onb_{}_{}_{}", environment.as_str(), id, random_token(32));
        let hash = hash_secret(&key);
        Self { id, key: SecretString::from(key), hash }
    }
}

/// An API key as presented in a `PartnerApiKey` header, split into its lookup id and digest.
pub struct PresentedApiKey {
    pub id: String,
    pub hash: SecretHash,
}

impl PresentedApiKey {
    /// `None` when the value does not have the shape of an Onboard key at all.
    pub fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(4, '_');
        let (prefix, env, id, secret) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let well_formed = prefix == "onb"
            && env.parse::<Environment>().is_ok()
            && id.len() == 16
            && id.bytes().all(|b| b.is_ascii_hexdigit())
            && (40..=64).contains(&secret.len());
        well_formed.then(|| Self { id: id.to_owned(), hash: hash_secret(raw) })
    }
}

/// A newly made OAuth client: `client_id` is public, the secret is shown once.
pub struct NewClient {
    pub client_id: String,
    pub secret: SecretString,
    pub hash: SecretHash,
}

stored_secret!(NewClient, client_id);

impl NewClient {
    pub fn generate() -> Self {
        let secret = format!("cs_{}", random_token(32));
        let hash = hash_secret(&secret);
        Self { client_id: format!("cli_{}", random_hex(12)), secret: SecretString::from(secret), hash }
    }
}

/// The credentials of a partner as printed once by `partner create` and the first `serve`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCredentials {
    pub partner_id: i64,
    pub name: String,
    pub environment: Environment,
    pub api_key: String,
    pub client_id: String,
    pub client_secret: String,
}

impl IssuedCredentials {
    pub fn new(partner: &crate::domain::Partner, key: &NewApiKey, client: &NewClient) -> Self {
        Self {
            partner_id: partner.id.get(),
            name: partner.name.clone(),
            environment: partner.environment,
            api_key: key.key.expose_secret().to_owned(),
            client_id: client.client_id.clone(),
            client_secret: client.secret.expose_secret().to_owned(),
        }
    }
}

impl std::fmt::Debug for IssuedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCredentials").field("partner_id", &self.partner_id).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_to_their_id_and_hash() {
        let key = NewApiKey::generate(Environment::Sandbox);
        let presented = PresentedApiKey::parse(key.key.expose_secret()).unwrap();
        assert_eq!(presented.id, key.id);
        assert!(digests_match(&key.hash, &presented.hash));
        assert!(key.key.expose_secret().starts_with("onb_sandbox_"));
    }

    #[test]
    fn malformed_keys_are_rejected_before_any_lookup() {
        for bad in
            ["", "onb", "onb_sandbox_zz_abc", "xyz_live_0123456789abcdef_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]
        {
            assert!(PresentedApiKey::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_changed_secret_does_not_match() {
        let key = NewApiKey::generate(Environment::Live);
        let mut tampered = key.key.expose_secret().to_owned();
        tampered.pop();
        tampered.push('A');
        let presented = PresentedApiKey::parse(&tampered).unwrap();
        assert!(!digests_match(&key.hash, &presented.hash) || tampered == key.key.expose_secret());
    }
}
