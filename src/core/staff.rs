//! Staff actions (DESIGN.md §7) that are not decisions on a user's onboarding: staff tokens,
//! dead-lettered jobs, ad-hoc sanctions screenings. Each action and its audit entry are one
//! write, so there is never an action without its record, nor a record without its action.

use super::audit::{self, Action};
use std::time::Duration;

use crate::auth::tokens::{generate_signing_key, open_private_key, seal_signing_key};
use crate::domain::credentials::{StaffRole, StoredSecret};
use crate::kek::Kek;
use crate::sanctions::{ListSelection, Query, Sanctions, SanctionsError, Screening};
use crate::store::ListVersion;
use crate::store::{StaffTokenRecord, Store, StoreResult, jobs, pin_unit, sanctions, staff};

/// The live staff token `raw` presents: none when it is not shaped like a staff token (a
/// partner's credential stops here), unknown, forged or revoked. The admin API and the console's
/// sign-in both authenticate through this.
pub async fn authenticate(store: &Store, raw: &str) -> StoreResult<Option<StaffTokenRecord>> {
    use crate::auth::credentials::digests_match;
    let Some(presented) = crate::auth::staff::PresentedStaffToken::parse(raw) else {
        return Ok(None);
    };
    let Some(record) = store.find_staff_token(&presented.id).await? else {
        return Ok(None);
    };
    let live = digests_match(&record.secret_hash, &presented.hash) && record.revoked_at.is_none();
    Ok(live.then_some(record))
}

/// Creates a staff token named `name` (names are unique: a second is `StoreError::Conflict`).
pub async fn create_token(
    store: &Store,
    name: &str,
    role: StaffRole,
    token: &impl StoredSecret,
    actor: &str,
    now: i64,
) -> StoreResult<StaffTokenRecord> {
    let (name, actor) = (name.to_owned(), actor.to_owned());
    let token = token.digest();
    store
        .write(move |mut tx| {
            pin_unit(async move {
                let record = staff::insert_token(&mut tx, &name, role, &token, now).await?;
                let detail = serde_json::json!({ "role": role });
                audit::record(&mut tx, &actor, Action::StaffTokenCreate, Some(&name), detail, now).await?;
                Ok(record)
            })
        })
        .await
}

/// Revokes the live token named `name`; false (and nothing audited) when there is none.
pub async fn revoke_token(store: &Store, name: &str, actor: &str, now: i64) -> StoreResult<bool> {
    let (name, actor) = (name.to_owned(), actor.to_owned());
    store
        .write(move |mut tx| {
            pin_unit(async move {
                let revoked = staff::revoke_token(&mut tx, &name, now).await?;
                if revoked {
                    let detail = serde_json::json!({});
                    audit::record(&mut tx, &actor, Action::StaffTokenRevoke, Some(&name), detail, now).await?;
                }
                Ok(revoked)
            })
        })
        .await
}

/// Puts a dead-lettered job back in the queue with fresh attempts; false (and nothing audited)
/// when `id` is not a dead job.
pub async fn retry_job(store: &Store, id: i64, actor: &str, now: i64) -> StoreResult<bool> {
    let actor = actor.to_owned();
    store
        .write(move |mut tx| {
            pin_unit(async move {
                let retried = jobs::retry_dead(&mut tx, id, now).await?;
                if retried {
                    let target = id.to_string();
                    audit::record(&mut tx, &actor, Action::JobRetry, Some(&target), serde_json::json!({}), now).await?;
                }
                Ok(retried)
            })
        })
        .await
}

/// Screens `query` against the current list for a staff member; the screening and the audit
/// entry that names its candidates are stored together.
pub async fn screen(
    store: &Store,
    sanctions: &Sanctions,
    query: &Query,
    lists: Option<&ListSelection>,
    actor: &str,
    now: i64,
) -> Result<Screening, SanctionsError> {
    let (screening, row) = sanctions.screen_person(query, lists, actor, None, None)?;
    let detail = serde_json::json!({
        "listVersion": screening.list_version,
        "lists": screening.lists,
        "decision": screening.decision,
        "candidates": screening
            .matches
            .iter()
            .map(|c| serde_json::json!({ "list": c.list, "listVersion": c.list_version, "entityId": c.entity_id }))
            .collect::<Vec<_>>(),
    });
    let actor = actor.to_owned();
    store
        .write(move |mut tx| {
            pin_unit(async move {
                sanctions::insert_screening(&mut tx, &row).await?;
                audit::record(&mut tx, &actor, Action::SanctionsScreen, None, detail, now).await
            })
        })
        .await?;
    Ok(screening)
}

/// Makes a new key the token-signing key; the old one verifies for `window` (the longest token
/// lifetime) so tokens already issued stay valid until they expire. Returns the new key's id.
pub async fn rotate_signing_key(
    store: &Store,
    kek: &Kek,
    window: Duration,
    actor: &str,
    now: i64,
) -> StoreResult<String> {
    let key = seal_signing_key(kek, generate_signing_key(now));
    let kid = key.kid.clone();
    let verify_until = now.saturating_add(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
    let actor = actor.to_owned();
    store
        .write(move |mut tx| {
            pin_unit(async move {
                crate::store::rotate_signing_key(&mut tx, &key, verify_until).await?;
                let detail = serde_json::json!({ "kid": key.kid, "oldKeysVerifyUntil": verify_until });
                audit::record(&mut tx, &actor, Action::SigningKeyRotate, Some(&key.kid), detail, now).await
            })
        })
        .await?;
    Ok(kid)
}

/// Loads a sanctions list publication for an operator: the version, its files, the job that
/// re-screens users against it and the audit entry are one write; then this node screens with
/// it (others pick it up on their next refresh). The same files twice change nothing but the
/// audit log. Returns the version and whether it is new.
pub async fn load_sanctions_list(
    store: &Store,
    sanctions: &Sanctions,
    publication: crate::sanctions::Publication,
    actor: &str,
    now: i64,
) -> Result<(ListVersion, bool), SanctionsError> {
    let (list, parsed) = crate::sanctions::prepare(publication).await?;
    let actor = actor.to_owned();
    let loaded = store
        .write(move |mut tx| {
            pin_unit(async move {
                let (version, created) = sanctions::insert_list(&mut tx, &list, now).await?;
                let detail = serde_json::json!({ "list": version, "created": created });
                let target = version.id.to_string();
                audit::record(&mut tx, &actor, Action::SanctionsLoad, Some(&target), detail, now).await?;
                Ok((version, created))
            })
        })
        .await?;
    sanctions.adopt(store, &loaded.0, parsed).await?;
    Ok(loaded)
}

/// Which stored secrets a rewrap reseals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrap {
    /// Only values not sealed at all (signing keys from before sealing existed): safe at every
    /// start, since nodes still running an earlier KEK can open what the current KEK seals only
    /// if they have it too, and unsealed values are opened by every version alike.
    Unsealed,
    /// Everything not sealed under the current KEK (`onboard keys rewrap`, once every node has
    /// the new KEK).
    All,
}

/// Seals every stored secret `scope` names under the current KEK (provider secrets, token-signing
/// keys), with one audit entry, in one write. Returns how many values were resealed (nothing is
/// written, the audit entry included, when none needed it).
pub async fn rewrap_secrets(
    store: &Store,
    kek: std::sync::Arc<Kek>,
    scope: Rewrap,
    actor: &str,
    now: i64,
) -> StoreResult<usize> {
    let actor = actor.to_owned();
    store
        .write(move |mut tx| {
            pin_unit(async move {
                let corrupt = |e: crate::kek::KekError| crate::store::StoreError::Corrupt(e.to_string());
                let mut count = 0;
                let stays =
                    |value: &[u8]| kek.is_current(value) || (scope == Rewrap::Unsealed && Kek::is_sealed(value));
                for mut key in crate::store::signing_keys_in(&mut tx).await? {
                    if stays(&key.private_key) {
                        continue;
                    }
                    let private = open_private_key(&kek, &key).map_err(corrupt)?;
                    key.private_key = private;
                    let resealed = seal_signing_key(&kek, key);
                    crate::store::replace_private_key(&mut tx, &resealed).await?;
                    count += 1;
                }
                for value in crate::store::kyc::sealed_secrets(&mut tx).await? {
                    if stays(&value.value) {
                        continue;
                    }
                    let aad = crate::core::kyc::secret_aad(value.column, value.partner_id);
                    let plain = kek.open(&aad, &value.value).map_err(corrupt)?;
                    crate::store::kyc::replace_sealed(&mut tx, &value, &kek.seal(&aad, &plain)).await?;
                    count += 1;
                }
                for (endpoint, column, value) in crate::store::webhooks::sealed_secrets(&mut tx).await? {
                    if stays(&value) {
                        continue;
                    }
                    let aad = crate::core::webhooks::secret_aad(&endpoint);
                    let plain = kek.open(&aad, &value).map_err(corrupt)?;
                    let resealed = kek.seal(&aad, &plain);
                    crate::store::webhooks::replace_sealed(&mut tx, &endpoint, column, &value, &resealed).await?;
                    count += 1;
                }
                for (partner, column, value) in crate::store::billing::sealed_payment_secrets(&mut tx).await? {
                    if stays(&value) {
                        continue;
                    }
                    let aad = crate::core::billing::secret_aad(column, partner);
                    let plain = kek.open(&aad, &value).map_err(corrupt)?;
                    let resealed = kek.seal(&aad, &plain);
                    crate::store::billing::replace_sealed_payment_secret(&mut tx, partner, column, &value, &resealed)
                        .await?;
                    count += 1;
                }
                if count > 0 {
                    let detail = serde_json::json!({ "resealed": count, "kek": kek.current_id() });
                    audit::record(&mut tx, &actor, Action::SecretsRewrap, None, detail, now).await?;
                }
                Ok(count)
            })
        })
        .await
}
