//! The console's own use cases (issue 26): a staff token exchanged for a browser session, and
//! holds that tell reviewers who is on a case. Everything else the console does is a use case
//! the admin API and the CLI call too (`onboarding::decide_case`, `staff::retry_job`).

use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::audit::{self, Action};
use crate::auth::credentials::{SecretHash, hash_secret, random_token};
use crate::auth::staff::Staff;
use crate::store::console::{self as repo, CaseHold};
use crate::store::{Store, StoreError, StoreResult, pin_unit};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// A session ends after this long without a request.
    pub session_idle_minutes: u64,
    /// … and this long after sign-in, whatever its use (a reviewer's working day).
    pub session_max_hours: u64,
    /// How long opening a case holds it for the reviewer (renewed on each opening).
    pub case_hold_minutes: u64,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self { session_idle_minutes: 30, session_max_hours: 8, case_hold_minutes: 15 }
    }
}

const MINUTE_MS: i64 = 60_000;

impl ConsoleSettings {
    fn idle_ms(&self) -> i64 {
        i64::try_from(self.session_idle_minutes).unwrap_or(i64::MAX / MINUTE_MS).saturating_mul(MINUTE_MS)
    }

    fn max_ms(&self) -> i64 {
        i64::try_from(self.session_max_hours).unwrap_or(i64::MAX / MINUTE_MS).saturating_mul(60 * MINUTE_MS)
    }

    fn hold_ms(&self) -> i64 {
        i64::try_from(self.case_hold_minutes).unwrap_or(i64::MAX / MINUTE_MS).saturating_mul(MINUTE_MS)
    }
}

/// The secret part of a session cookie: 256 random bits, base64url (43 characters).
const COOKIE_SECRET_BYTES: usize = 32;
/// The idle timeout is refreshed at most this often, so that reading pages is not one write per
/// request.
const TOUCH_EVERY_MS: i64 = MINUTE_MS;

/// A signed-in staff member's session.
#[derive(Debug, Clone)]
pub struct Session {
    pub staff: Staff,
    id_hash: SecretHash,
    /// The form token of this session: HMAC-SHA256 of a fixed label under the cookie's secret,
    /// so it is bound to the session, never stored, and cannot be derived without the cookie.
    pub csrf: String,
}

impl Session {
    /// Whether `presented` is this session's form token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        same_token(presented, &self.csrf)
    }
}

/// Whether two form tokens are the same, in time that does not depend on where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn csrf_token(secret: &str) -> String {
    use base64::Engine;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(b"onboard console form token v1");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A random value for a form shown before there is a session (the sign-in form), to be echoed
/// by the form and by a cookie (double submit).
pub fn pre_session_token() -> String {
    random_token(COOKIE_SECRET_BYTES)
}

/// Exchanges a staff token for a session: the session and its audit entry are one write. `None`
/// when the token is not a live staff token. Returns the cookie's secret with the session.
pub async fn sign_in(store: &Store, token: &str, now: i64) -> StoreResult<Option<(SecretString, Session)>> {
    let Some(record) = super::staff::authenticate(store, token).await? else {
        return Ok(None);
    };
    let secret = random_token(COOKIE_SECRET_BYTES);
    let id_hash = hash_secret(&secret);
    let staff = Staff { name: record.name, role: record.role };
    let (actor, name, token_id) = (staff.actor(), staff.name.clone(), record.id);
    store
        .write(move |mut tx| {
            pin_unit(async move {
                repo::insert_session(&mut tx, &id_hash, &token_id, now).await?;
                let detail = serde_json::json!({ "tokenId": token_id });
                audit::record(&mut tx, &actor, Action::ConsoleSignIn, Some(&name), detail, now).await
            })
        })
        .await?;
    let session = Session { staff, id_hash, csrf: csrf_token(&secret) };
    Ok(Some((SecretString::from(secret), session)))
}

/// The live session of a cookie: none when the cookie is malformed or unknown, the session was
/// signed out or timed out, or its staff token was revoked.
pub async fn session(
    store: &Store,
    settings: &ConsoleSettings,
    cookie: &str,
    now: i64,
) -> StoreResult<Option<Session>> {
    let well_formed = cookie.len() == 43 && cookie.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Ok(None);
    }
    let id_hash = hash_secret(cookie);
    let Some(row) = store.console_session(&id_hash).await? else {
        return Ok(None);
    };
    if now.saturating_sub(row.last_seen_at) > settings.idle_ms()
        || now.saturating_sub(row.created_at) > settings.max_ms()
    {
        return Ok(None);
    }
    let role =
        row.role.parse().map_err(|e: crate::domain::UnknownValue| StoreError::Corrupt(format!("staff role: {e}")))?;
    if now.saturating_sub(row.last_seen_at) >= TOUCH_EVERY_MS {
        store.touch_console_session(&id_hash, now).await?;
    }
    Ok(Some(Session { staff: Staff { name: row.name, role }, id_hash, csrf: csrf_token(cookie) }))
}

/// Ends `session` (its cookie is refused from now on), with its audit entry.
pub async fn sign_out(store: &Store, session: &Session, now: i64) -> StoreResult<()> {
    let (id_hash, actor, name) = (session.id_hash, session.staff.actor(), session.staff.name.clone());
    store
        .write(move |mut tx| {
            pin_unit(async move {
                if repo::end_session(&mut tx, &id_hash, now).await? {
                    audit::record(&mut tx, &actor, Action::ConsoleSignOut, Some(&name), serde_json::json!({}), now)
                        .await?;
                }
                Ok(())
            })
        })
        .await
}

/// Takes (or renews) `staff`'s hold on the case of `user` unless another reviewer's hold is
/// running; returns the hold as it stands. A decision by anyone but the holder is refused while
/// it runs (`onboarding::decide_case`), and releases it.
pub async fn hold_case(
    store: &Store,
    settings: &ConsoleSettings,
    user: &str,
    staff: &Staff,
    now: i64,
) -> StoreResult<CaseHold> {
    let (user, holder, until) = (user.to_owned(), staff.actor(), now.saturating_add(settings.hold_ms()));
    store.write(move |mut tx| pin_unit(async move { repo::hold_case(&mut tx, &user, &holder, until, now).await })).await
}

/// Lets go of `staff`'s hold on the case of `user` (another reviewer may take it at once); false
/// when they held none.
pub async fn release_case(store: &Store, user: &str, staff: &Staff) -> StoreResult<bool> {
    let (user, holder) = (user.to_owned(), staff.actor());
    store.write(move |mut tx| pin_unit(async move { repo::release_hold(&mut tx, &user, &holder).await })).await
}
