//! Partner authentication: credentials at rest, signed access tokens, and the key ring.

pub mod cache;
pub mod credentials;
pub mod end_user;
pub mod passwords;
pub mod staff;
pub mod tokens;

pub use tokens::{KeyRing, PartnerClaims, TokenError};

use serde::{Deserialize, Serialize};

/// Partner credentials and the tokens this node issues.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// `iss` of the access tokens this node issues.
    pub issuer: String,
    /// Lifetime of partner access tokens from `POST /oauth/token`.
    pub access_token_ttl_secs: u64,
    /// Remember verified bearer tokens and API keys (≤ 30 s) instead of checking every request.
    pub credential_cache: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self { issuer: "onboard".into(), access_token_ttl_secs: 3600, credential_cache: true }
    }
}
