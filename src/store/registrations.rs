//! Seed 000 registrations: insert-or-return by (partner, externalUserId).

use super::{Store, StoreError, StoreResult};
use crate::domain::{PartnerId, PartnerRegistration, PublicUserId, UserId};

/// A registration as stored (the comparison form: e-mail as spelled, phone in E.164).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RegistrationRecord {
    pub id: i64,
    pub public_id: String,
    pub external_user_id: String,
    pub auth_method: String,
    pub identifier: Option<String>,
    pub user_type: String,
    pub alias: Option<String>,
    pub created_at: i64,
}

impl RegistrationRecord {
    pub fn user_id(&self) -> Result<UserId, StoreError> {
        UserId::new(self.id).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

/// What a registration call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// A new user.
    Created(RegistrationRecord),
    /// The partner already registered this externalUserId: the stored registration.
    Existing(RegistrationRecord),
}

impl Store {
    /// Registers the user unless the partner already has this externalUserId, in which case the
    /// stored registration is returned for the caller to compare. The unique index decides, so
    /// concurrent identical calls (on any number of nodes) create one user.
    pub async fn register_partner_user(
        &self,
        partner: PartnerId,
        registration: &PartnerRegistration,
        public_id: &PublicUserId,
        now: i64,
    ) -> StoreResult<Registered> {
        let email = match &registration.sign_in {
            crate::domain::SignIn::Email(email) => Some(email.as_str()),
            _ => None,
        };
        let inserted: Option<RegistrationRecord> = with_pool!(self, write, |pool| {
            sqlx::query_as(concat!(
                "INSERT INTO users (public_id, partner_id, email, external_user_id, auth_method, identifier, user_type, alias, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (partner_id, external_user_id) DO NOTHING
                 RETURNING ",
                registration_columns!()
            ))
            .bind(public_id.as_str())
            .bind(partner.get())
            .bind(email)
            .bind(registration.external_user_id.as_str())
            .bind(registration.sign_in.method().as_str())
            .bind(registration.sign_in.identifier())
            .bind(registration.user_type.as_str())
            .bind(registration.alias.as_ref().map(|a| a.as_str()))
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        if let Some(record) = inserted {
            return Ok(Registered::Created(record));
        }
        // The conflicting row is committed (the insert waited for it), so it is visible now.
        self.find_registration(partner, registration.external_user_id.as_str())
            .await?
            .map(Registered::Existing)
            .ok_or_else(|| StoreError::Corrupt("a conflicting registration vanished".into()))
    }

    /// The partner's registration for `external_user_id`, if any.
    pub async fn find_registration(
        &self,
        partner: PartnerId,
        external_user_id: &str,
    ) -> StoreResult<Option<RegistrationRecord>> {
        let found = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                registration_columns!(),
                " FROM users WHERE partner_id = $1 AND external_user_id = $2"
            ))
            .bind(partner.get())
            .bind(external_user_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(found)
    }
}
