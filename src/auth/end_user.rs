//! End-user credentials (seed 003): EdDSA access tokens signed by the same key ring as partner
//! tokens, and opaque rotating refresh tokens.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::credentials::{SecretHash, hash_secret, random_hex, random_token};
use super::tokens::{KeyRing, TokenError};
use crate::domain::{Environment, PartnerId};
use crate::store::{NewRefreshToken, TokenOwner};

/// `token_use` of end-user access tokens; partner routes refuse them and vice versa.
pub const USER_TOKEN: &str = "user";

/// What an end-user token allows (seed 003's `scope`, completed): open and read the user's
/// accounts, read the profile (`GET /me`) and write it (`PUT /me/profile`), submit KYC, and
/// manage subscriptions.
pub const USER_SCOPE: &str = "accounts:create accounts:read accounts:show profile:read profile:write kyc:submit \
     subscriptions:read subscriptions:create";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserClaims {
    pub iss: String,
    /// `usr:<uuid>`.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub partner_id: i64,
    pub env: Environment,
    pub scope: String,
    /// The refresh-token family (session) this token was issued in; revoking it ends the token.
    pub sid: String,
    pub token_use: String,
}

impl UserClaims {
    pub fn partner_id(&self) -> Option<PartnerId> {
        PartnerId::new(self.partner_id).ok()
    }
}

impl KeyRing {
    pub fn issue_user_token(&self, owner: &TokenOwner, now: i64, ttl: Duration) -> Result<String, TokenError> {
        let claims = UserClaims {
            iss: self.issuer().to_owned(),
            sub: owner.public_id.to_string(),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            jti: uuid::Uuid::now_v7().to_string(),
            partner_id: owner.partner.get(),
            env: owner.environment,
            scope: USER_SCOPE.to_owned(),
            sid: owner.family_id.clone(),
            token_use: USER_TOKEN.to_owned(),
        };
        self.sign(&claims)
    }

    /// Verifies signature, issuer, expiry and `token_use`; the caller checks the family.
    pub async fn verify_user_token(&self, token: &str) -> Result<UserClaims, TokenError> {
        let claims: UserClaims = self.verify(token).await?;
        if claims.token_use != USER_TOKEN {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }
}

/// A new refresh token: the text goes to the client once; the record is what is stored.
pub struct IssuedRefreshToken {
    pub token: SecretString,
    pub record: NewRefreshToken,
}

impl IssuedRefreshToken {
    /// A token of `family` (a new family when None), valid `ttl` from `now_ms`.
    pub fn generate(family: Option<&str>, now_ms: i64, ttl: Duration) -> Self {
        let id = random_hex(12);
        let token = format!("ort_{id}_{}", random_token(32));
        let record = NewRefreshToken {
            id,
            family_id: family.map_or_else(|| format!("fam_{}", uuid::Uuid::now_v7().simple()), str::to_owned),
            secret_hash: hash_secret(&token),
            created_at: now_ms,
            expires_at: now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
        };
        Self { token: SecretString::from(token), record }
    }
}

/// A refresh token as presented: its lookup id and the digest of the whole text. None when it
/// does not have the shape of one.
pub fn parse_refresh_token(raw: &str) -> Option<(String, SecretHash)> {
    let rest = raw.strip_prefix("ort_")?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()) && (40..=64).contains(&secret.len());
    well_formed.then(|| (id.to_owned(), hash_secret(raw)))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn refresh_tokens_parse_back_to_their_record() {
        let issued = IssuedRefreshToken::generate(None, 1_000, Duration::from_secs(60));
        let (id, hash) = parse_refresh_token(issued.token.expose_secret()).unwrap();
        assert_eq!(id, issued.record.id);
        assert_eq!(hash, issued.record.secret_hash);
        assert_eq!(issued.record.expires_at, 61_000);
        assert!(issued.record.family_id.starts_with("fam_"));
        let next = IssuedRefreshToken::generate(Some(&issued.record.family_id), 2_000, Duration::from_secs(60));
        assert_eq!(next.record.family_id, issued.record.family_id);
        assert!(parse_refresh_token("ort_short_x").is_none());
        assert!(parse_refresh_token("eyJhbGciOi.x.y").is_none());
    }
}
