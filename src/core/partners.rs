//! Partners (the tenants): creating one with its first credentials, the sandbox partner of a
//! first start, rotating API keys, and the settings a partner manages itself. Secrets are
//! generated here and returned once; the store keeps their digests.

use std::time::Duration;

use secrecy::SecretString;

use super::audit::{self, Action};
use crate::auth::credentials::{IssuedCredentials, NewApiKey, NewClient};
use crate::domain::cip::RequiredConsents;
use crate::domain::credentials::StoredSecret;
use crate::domain::sanctions_list::ListSelection;
use crate::domain::{Environment, Partner, PartnerId, PartnerName};
use crate::store::{Store, StoreResult, partners, pin_unit};

/// Creates a partner with its first API key and OAuth client; audited as `actor`'s.
pub async fn create(
    store: &Store,
    name: &PartnerName,
    environment: Environment,
    actor: &str,
    now: i64,
) -> StoreResult<IssuedCredentials> {
    let (key, client) = (NewApiKey::generate(environment), NewClient::generate());
    let (name, stored_key, stored_client, actor) = (name.clone(), key.digest(), client.digest(), actor.to_owned());
    let partner = store
        .write(move |mut tx| {
            pin_unit(async move {
                let partner = partners::create(&mut tx, &name, environment, &stored_key, &stored_client, now).await?;
                let detail = serde_json::json!({ "name": partner.name, "environment": environment });
                let target = partner.id.to_string();
                audit::record(&mut tx, &actor, Action::PartnerCreate, Some(&target), detail, now).await?;
                Ok(partner)
            })
        })
        .await?;
    Ok(IssuedCredentials::new(&partner, &key, &client))
}

/// On a first start only: the sandbox partner, when the database has no partner yet.
pub async fn bootstrap_sandbox(store: &Store, now: i64) -> StoreResult<Option<IssuedCredentials>> {
    let name = PartnerName::parse("Sandbox").expect("a valid constant name");
    let (key, client) = (NewApiKey::generate(Environment::Sandbox), NewClient::generate());
    let partner = store.bootstrap_partner(&name, &key, &client, now).await?;
    Ok(partner.map(|p| IssuedCredentials::new(&p, &key, &client)))
}

/// A new API key, shown once, and when the keys it replaces stop working.
pub struct RotatedKey {
    pub api_key: SecretString,
    pub previous_keys_expire_at: i64,
}

/// Issues a new API key; the partner's current keys keep working for `grace` (none when zero).
/// Audited as `actor`'s (the partner itself, or an operator). `None` when the partner no longer
/// exists.
pub async fn rotate_api_key(
    store: &Store,
    partner: &Partner,
    grace: Duration,
    actor: &str,
    now: i64,
) -> StoreResult<Option<RotatedKey>> {
    let key = NewApiKey::generate(partner.environment);
    let (id, stored, actor) = (partner.id, key.digest(), actor.to_owned());
    let rotated = store
        .write(move |mut tx| {
            pin_unit(async move {
                if !partners::rotate_key(&mut tx, id, &stored, grace, now).await? {
                    return Ok(false);
                }
                let detail = serde_json::json!({ "keyId": stored.id, "graceSecs": grace.as_secs() });
                audit::record(&mut tx, &actor, Action::ApiKeyRotate, Some(&id.to_string()), detail, now).await?;
                Ok(true)
            })
        })
        .await?;
    if !rotated {
        return Ok(None);
    }
    let previous_keys_expire_at = now.saturating_add(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
    Ok(Some(RotatedKey { api_key: key.key, previous_keys_expire_at }))
}

/// What a partner may change of its own settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct PartnerSettings {
    pub required_consents: Option<RequiredConsents>,
    pub consent_confirmation: Option<crate::domain::consent::ConsentConfirmation>,
    /// Where Onboard writes to the partner (a webhook endpoint disabled, say).
    pub contact_email: Option<crate::domain::Email>,
}

/// Chooses the sanctions lists a partner's users are screened against (`None`: every list
/// loaded), for an operator: the choice and its audit entry are one write. False (and nothing
/// audited) when there is no such partner. Users already screened are screened against the
/// new choice at their next screening (a correction, or a list's next version).
pub async fn set_sanctions_lists(
    store: &Store,
    partner: PartnerId,
    lists: Option<&ListSelection>,
    actor: &str,
    now: i64,
) -> StoreResult<bool> {
    let (stored, actor) = (lists.map(ToString::to_string), actor.to_owned());
    store
        .write(move |mut tx| {
            pin_unit(async move {
                let set = crate::store::sanctions::set_partner_lists(&mut tx, partner, stored.as_deref()).await?;
                if set {
                    let detail = serde_json::json!({ "lists": stored.as_deref().unwrap_or("all") });
                    let target = partner.to_string();
                    audit::record(&mut tx, &actor, Action::PartnerSanctionsLists, Some(&target), detail, now).await?;
                }
                Ok(set)
            })
        })
        .await
}

/// Changes the partner's settings in one statement; false when the partner does not exist.
pub async fn set_settings(store: &Store, partner: &Partner, settings: PartnerSettings) -> StoreResult<bool> {
    let PartnerSettings { required_consents, consent_confirmation, contact_email } = settings;
    store.set_partner_settings(partner.id, required_consents, consent_confirmation, contact_email.as_ref()).await
}
