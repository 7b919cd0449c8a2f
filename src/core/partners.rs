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
use crate::sanctions::RescreenPage;
use crate::store::{ListVersion, Store, StoreResult, jobs, partners, pin_unit, sanctions};

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
/// loaded), for an operator. The choice, its audit entry and the re-screening of the partner's
/// users against each loaded list the choice gained are one write; a list dropped changes no
/// screening already made. False (and nothing audited) when there is no such partner.
pub async fn set_sanctions_lists(
    store: &Store,
    partner: PartnerId,
    lists: Option<&ListSelection>,
    actor: &str,
    now: i64,
) -> StoreResult<bool> {
    // A version loaded after this read re-screens everyone itself.
    let loaded = store.current_sanctions_lists().await?;
    let (chosen, actor) = (lists.cloned(), actor.to_owned());
    store
        .write(move |mut tx| {
            pin_unit(async move {
                let Some(before) = sanctions::lock_partner_lists(&mut tx, partner).await? else {
                    return Ok(false);
                };
                let before = before.as_deref().and_then(|s| ListSelection::parse(s).ok());
                let stored = chosen.as_ref().map(ToString::to_string);
                sanctions::set_partner_lists(&mut tx, partner, stored.as_deref()).await?;
                let gained: Vec<&ListVersion> = loaded
                    .iter()
                    .filter(|v| chosen.as_ref().is_none_or(|c| c.contains(v.list)))
                    .filter(|v| before.as_ref().is_some_and(|b| !b.contains(v.list)))
                    .collect();
                // One run covers every list gained: each user is screened against all of its
                // partner's lists at once.
                if let Some(version) = gained.first() {
                    let page = RescreenPage {
                        list_id: version.id,
                        after_user_id: 0,
                        partner_id: Some(partner.get()),
                        run: Some(now),
                        list: Some(version.list),
                    };
                    jobs::enqueue(&mut tx, &page.job(now), now).await?;
                }
                let detail = serde_json::json!({
                    "lists": stored.as_deref().unwrap_or("all"),
                    "rescreening": gained.iter().map(|v| v.list).collect::<Vec<_>>(),
                });
                let target = partner.to_string();
                audit::record(&mut tx, &actor, Action::PartnerSanctionsLists, Some(&target), detail, now).await?;
                Ok(true)
            })
        })
        .await
}

/// Changes the partner's settings in one statement; false when the partner does not exist.
pub async fn set_settings(store: &Store, partner: &Partner, settings: PartnerSettings) -> StoreResult<bool> {
    let PartnerSettings { required_consents, consent_confirmation, contact_email } = settings;
    store.set_partner_settings(partner.id, required_consents, consent_confirmation, contact_email.as_ref()).await
}
