//! Rows as the database returns them, and their conversion into trusted records.

use crate::domain::credentials::{ApiKeyRecord, ClientRecord};
use crate::domain::{Partner, PartnerId};

use super::StoreError;

#[derive(sqlx::FromRow)]
pub(super) struct PartnerRow {
    id: i64,
    name: String,
    environment: String,
    created_at: i64,
}

impl TryFrom<PartnerRow> for Partner {
    type Error = StoreError;
    fn try_from(row: PartnerRow) -> Result<Self, StoreError> {
        Ok(Partner {
            id: PartnerId::new(row.id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            name: row.name,
            environment: row.environment.parse().map_err(|_| StoreError::Corrupt("partner environment".into()))?,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ApiKeyRow {
    #[sqlx(flatten)]
    partner: PartnerRow,
    secret_hash: Vec<u8>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<ApiKeyRow> for ApiKeyRecord {
    type Error = StoreError;
    fn try_from(row: ApiKeyRow) -> Result<Self, StoreError> {
        Ok(ApiKeyRecord {
            partner: row.partner.try_into()?,
            secret_hash: row.secret_hash,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ClientRow {
    #[sqlx(flatten)]
    partner: PartnerRow,
    secret_hash: Vec<u8>,
    revoked_at: Option<i64>,
}

impl TryFrom<ClientRow> for ClientRecord {
    type Error = StoreError;
    fn try_from(row: ClientRow) -> Result<Self, StoreError> {
        Ok(ClientRecord { partner: row.partner.try_into()?, secret_hash: row.secret_hash, revoked_at: row.revoked_at })
    }
}

/// An Ed25519 signing key: PKCS#8 private key, raw 32-byte public key.
#[derive(Clone, sqlx::FromRow)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: i64,
    pub is_current: Option<i64>,
    pub verify_until: Option<i64>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord").field("kid", &self.kid).finish_non_exhaustive()
    }
}
