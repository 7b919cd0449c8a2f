//! Seed 003: pending sign-ups (step 1), the users step 2 creates, and end-user refresh tokens.
//!
//! Every decision that must hold across concurrent requests and nodes is taken by the database:
//! the resend throttle is a conditional upsert, a code attempt is an atomic increment, the
//! user's e-mail is the partial unique index of migration 0005, and a refresh token is spent by
//! a conditional update, so of two concurrent uses exactly one rotates and the other is reuse.

use subtle::ConstantTimeEq;

use super::jobs::{self, NewJob};
use super::{Store, StoreError, StoreResult, Tx, pin_unit};
use crate::domain::signup::UserRole;
use crate::domain::{Email, Environment, PartnerId, PublicUserId};

/// What step 1 writes: the pending sign-up and the mail that goes with it.
#[derive(Debug, Clone)]
pub struct NewSignup {
    pub partner: PartnerId,
    pub email: Email,
    pub password_hash: String,
    pub role: UserRole,
    pub code_hash: [u8; 32],
    pub expires_at: i64,
    /// Sent when the address has no account yet (the code).
    pub code_mail: NewJob,
    /// Sent instead when it has one ("you already have an account").
    pub exists_mail: NewJob,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupStart {
    /// Recorded and mailed. `existing` is for metrics and tests only: the caller's answer must
    /// not depend on it.
    Sent { existing: bool },
    /// A code went to this address less than the resend interval ago.
    TooSoon { retry_after_ms: i64 },
}

/// The latest step 1 for an address.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingSignup {
    /// The address as step 1 spelled it (the account keeps this spelling).
    pub email: String,
    pub kind: String,
    pub password_hash: String,
    pub code_hash: Vec<u8>,
    pub code_sent_at: i64,
    pub expires_at: i64,
    pub attempts: i64,
    pub user_id: Option<i64>,
}

impl PendingSignup {
    pub fn for_existing_account(&self) -> bool {
        self.kind == "existing"
    }
}

/// A refresh token to store: `ort_<id>_<secret>`, kept as its id and the SHA-256 of the whole.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub id: String,
    pub family_id: String,
    pub secret_hash: [u8; 32],
    pub created_at: i64,
    pub expires_at: i64,
}

/// Step 2's write: the user (unless a replay), and a new token family for it.
#[derive(Debug, Clone)]
pub struct CompleteSignup {
    pub partner: PartnerId,
    pub email: Email,
    /// The step 1 this step 2 confirms; a newer step 1 makes it stale.
    pub code_sent_at: i64,
    pub max_attempts: i64,
    pub public_id: PublicUserId,
    pub password_hash: String,
    pub role: UserRole,
    pub refresh: NewRefreshToken,
    pub now: i64,
}

/// Whom a token family belongs to: what an end-user access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub user_id: i64,
    pub public_id: PublicUserId,
    pub partner: PartnerId,
    pub environment: Environment,
    pub family_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignupCompletion {
    /// The user was created now.
    Created(TokenOwner),
    /// This step 2 had already succeeded: same user, new tokens.
    Replayed(TokenOwner),
    /// A newer step 1 replaced the pending sign-up, or its attempts ran out meanwhile.
    Stale,
    /// Another surface created an account with this address since step 1.
    EmailTaken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    Rotated(TokenOwner),
    /// The token had been used before: the whole family is now revoked (RFC 9700 §4.14.2).
    Reused,
    /// Unknown, wrong secret, expired, or of a revoked family.
    Invalid,
}

#[derive(sqlx::FromRow)]
struct StoredRefreshToken {
    secret_hash: Vec<u8>,
    used_at: Option<i64>,
    expires_at: i64,
    family: String,
    revoked_at: Option<i64>,
    user_id: i64,
}

/// An end user as `GET /me` shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndUser {
    pub public_id: String,
    pub email: Option<String>,
    pub user_role: Option<String>,
    pub cip_status: Option<String>,
    pub cip_detail: Option<String>,
    pub created_at: i64,
}

/// Starts a token family for `user` and stores its first refresh token, in the open transaction.
async fn start_family(tx: &mut Tx<'_>, user: i64, partner: i64, refresh: &NewRefreshToken) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query("INSERT INTO token_families (id, user_id, partner_id, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&refresh.family_id)
            .bind(user)
            .bind(partner)
            .bind(refresh.created_at)
            .execute(conn)
            .await
            .map(drop)?
    });
    insert_refresh(tx, refresh).await
}

async fn insert_refresh(tx: &mut Tx<'_>, refresh: &NewRefreshToken) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO refresh_tokens (id, family_id, secret_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&refresh.id)
        .bind(&refresh.family_id)
        .bind(&refresh.secret_hash[..])
        .bind(refresh.created_at)
        .bind(refresh.expires_at)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

/// Revokes a family in the open transaction; false when it was revoked already.
async fn revoke_family(tx: &mut Tx<'_>, family: &str, reason: &str, now: i64) -> StoreResult<bool> {
    let done = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE token_families SET revoked_at = $1, revoke_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(family)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// The owner of a family, read in the open transaction.
async fn owner_of(tx: &mut Tx<'_>, user: i64, family: &str) -> StoreResult<TokenOwner> {
    let (public_id, partner_id, environment): (String, i64, String) = on_tx!(tx, |conn| {
        sqlx::query_as(
            "SELECT u.public_id, u.partner_id, p.environment FROM users u JOIN partners p ON p.id = u.partner_id
             WHERE u.id = $1",
        )
        .bind(user)
        .fetch_one(conn)
        .await?
    });
    owner(user, public_id, partner_id, &environment, family)
}

fn owner(user_id: i64, public_id: String, partner: i64, environment: &str, family: &str) -> StoreResult<TokenOwner> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("user {user_id}: {what}"));
    Ok(TokenOwner {
        user_id,
        public_id: public_id.parse().map_err(|_| corrupt("public id"))?,
        partner: PartnerId::new(partner).map_err(|_| corrupt("partner"))?,
        environment: environment.parse().map_err(|_| corrupt("environment"))?,
        family_id: family.to_owned(),
    })
}

impl Store {
    /// Step 1: records the pending sign-up (replacing an earlier one) and enqueues its mail, in
    /// one transaction — unless a code went to this address less than `resend_interval_ms` ago.
    pub async fn start_signup(
        &self,
        signup: &NewSignup,
        resend_interval_ms: i64,
        now: i64,
    ) -> StoreResult<SignupStart> {
        let (signup, key) = (signup.clone(), signup.email.key());
        write_unit!(self, |tx| {
            let accounts: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE partner_id = $1 AND email_key = $2")
                    .bind(signup.partner.get())
                    .bind(&key)
                    .fetch_one(&mut *tx)
                    .await?;
            let existing = accounts > 0;
            // The throttle is the upsert's own condition, so two concurrent step 1s send one code.
            let written = sqlx::query(
                "INSERT INTO pending_signups (partner_id, email_key, email, kind, password_hash, user_role, code_hash,
                                              code_sent_at, expires_at, attempts, user_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, NULL)
                 ON CONFLICT (partner_id, email_key) DO UPDATE SET
                     email = excluded.email, kind = excluded.kind, password_hash = excluded.password_hash,
                     user_role = excluded.user_role, code_hash = excluded.code_hash,
                     code_sent_at = excluded.code_sent_at, expires_at = excluded.expires_at, attempts = 0, user_id = NULL
                 WHERE pending_signups.code_sent_at <= $10",
            )
            .bind(signup.partner.get())
            .bind(&key)
            .bind(signup.email.as_str())
            .bind(if existing { "existing" } else { "new" })
            .bind(&signup.password_hash)
            .bind(signup.role.as_str())
            .bind(&signup.code_hash[..])
            .bind(now)
            .bind(signup.expires_at)
            .bind(now - resend_interval_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if written == 0 {
                let sent_at: i64 = sqlx::query_scalar(
                    "SELECT code_sent_at FROM pending_signups WHERE partner_id = $1 AND email_key = $2",
                )
                .bind(signup.partner.get())
                .bind(&key)
                .fetch_one(&mut *tx)
                .await?;
                return Ok(SignupStart::TooSoon { retry_after_ms: (sent_at + resend_interval_ms - now).max(1) });
            }
            let mail = if existing { &signup.exists_mail } else { &signup.code_mail };
            jobs::enqueue(&mut Tx::from(&mut *tx), mail, now).await?;
            Ok(SignupStart::Sent { existing })
        })
    }

    pub async fn pending_signup(&self, partner: PartnerId, email: &Email) -> StoreResult<Option<PendingSignup>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT email, kind, password_hash, code_hash, code_sent_at, expires_at, attempts, user_id
                 FROM pending_signups WHERE partner_id = $1 AND email_key = $2",
            )
            .bind(partner.get())
            .bind(email.key())
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Counts a wrong code (or password) against the step 1 sent at `code_sent_at`; returns the
    /// attempts made so far, or None when a newer step 1 replaced it.
    pub async fn fail_signup_attempt(
        &self,
        partner: PartnerId,
        email: &Email,
        code_sent_at: i64,
    ) -> StoreResult<Option<i64>> {
        let key = email.key();
        write_unit!(self, |tx| {
            Ok(sqlx::query_scalar(
                "UPDATE pending_signups SET attempts = attempts + 1
                 WHERE partner_id = $1 AND email_key = $2 AND code_sent_at = $3 RETURNING attempts",
            )
            .bind(partner.get())
            .bind(key)
            .bind(code_sent_at)
            .fetch_optional(&mut *tx)
            .await?)
        })
    }

    /// Step 2: creates the user and its first token family, or — when this step 2 already
    /// succeeded — a new family for the same user. One transaction; the pending row is locked
    /// first (a no-op update), so concurrent step 2s of one sign-up create one user.
    pub async fn complete_signup(&self, signup: &CompleteSignup) -> StoreResult<SignupCompletion> {
        let (signup, key) = (signup.clone(), signup.email.key());
        write_unit!(self, |tx| {
            let pending: Option<(String, i64, Option<i64>, i64)> = sqlx::query_as(
                "UPDATE pending_signups SET attempts = attempts WHERE partner_id = $1 AND email_key = $2
                 RETURNING kind, attempts, user_id, code_sent_at",
            )
            .bind(signup.partner.get())
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((kind, attempts, user_id, code_sent_at)) = pending else { return Ok(SignupCompletion::Stale) };
            if kind != "new" || code_sent_at != signup.code_sent_at || attempts >= signup.max_attempts {
                return Ok(SignupCompletion::Stale);
            }
            if let Some(user_id) = user_id {
                let mut tx = Tx::from(&mut *tx);
                start_family(&mut tx, user_id, signup.partner.get(), &signup.refresh).await?;
                let owner = owner_of(&mut tx, user_id, &signup.refresh.family_id).await?;
                return Ok(SignupCompletion::Replayed(owner));
            }
            // DO NOTHING rather than an error: a failed statement would abort the whole
            // transaction on PostgreSQL. The only index a fresh user can collide on is the
            // partner's e-mail (its public id is new).
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO users (public_id, partner_id, email, email_key, password_hash, user_role, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(signup.public_id.as_str())
            .bind(signup.partner.get())
            .bind(signup.email.as_str())
            .bind(&key)
            .bind(&signup.password_hash)
            .bind(signup.role.as_str())
            .bind(signup.now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(user_id) = inserted else { return Ok(SignupCompletion::EmailTaken) };
            sqlx::query("UPDATE pending_signups SET user_id = $1 WHERE partner_id = $2 AND email_key = $3")
                .bind(user_id)
                .bind(signup.partner.get())
                .bind(&key)
                .execute(&mut *tx)
                .await?;
            let mut tx = Tx::from(&mut *tx);
            start_family(&mut tx, user_id, signup.partner.get(), &signup.refresh).await?;
            let owner = owner_of(&mut tx, user_id, &signup.refresh.family_id).await?;
            Ok(SignupCompletion::Created(owner))
        })
    }

    /// Exchanges refresh token `id` (whose whole text hashes to `presented`) for `next`, in the
    /// same family. A token presented a second time revokes its family.
    pub async fn rotate_refresh_token(
        &self,
        id: &str,
        presented: &[u8; 32],
        next: &NewRefreshToken,
        now: i64,
    ) -> StoreResult<Rotation> {
        let (id, presented, next) = (id.to_owned(), *presented, next.clone());
        write_unit!(self, |tx| {
            let row: Option<StoredRefreshToken> = sqlx::query_as(
                "SELECT t.secret_hash, t.used_at, t.expires_at, f.id AS family, f.revoked_at, f.user_id
                 FROM refresh_tokens t JOIN token_families f ON f.id = t.family_id WHERE t.id = $1",
            )
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(StoredRefreshToken { secret_hash: stored, used_at, expires_at, family, revoked_at, user_id }) =
                row
            else {
                return Ok(Rotation::Invalid);
            };
            // Only the holder of the whole token may spend or burn it.
            if !bool::from(stored.as_slice().ct_eq(&presented[..])) || revoked_at.is_some() {
                return Ok(Rotation::Invalid);
            }
            if used_at.is_some() {
                revoke_family(&mut Tx::from(&mut *tx), &family, "refresh token reused", now).await?;
                return Ok(Rotation::Reused);
            }
            if expires_at <= now {
                return Ok(Rotation::Invalid);
            }
            let spent = sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
                .bind(now)
                .bind(&id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if spent == 0 {
                // Spent by a concurrent request between our read and this update: reuse.
                revoke_family(&mut Tx::from(&mut *tx), &family, "refresh token reused", now).await?;
                return Ok(Rotation::Reused);
            }
            let next = NewRefreshToken { family_id: family.clone(), ..next.clone() };
            let mut tx = Tx::from(&mut *tx);
            insert_refresh(&mut tx, &next).await?;
            let owner = owner_of(&mut tx, user_id, &family).await?;
            Ok(Rotation::Rotated(owner))
        })
    }

    /// Revokes the family of refresh token `id` if `presented` is its hash; false otherwise.
    pub async fn revoke_refresh_token(&self, id: &str, presented: &[u8; 32], now: i64) -> StoreResult<bool> {
        let row: Option<(Vec<u8>, String)> = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT secret_hash, family_id FROM refresh_tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        match row {
            Some((stored, family)) if bool::from(stored.as_slice().ct_eq(&presented[..])) => {
                self.revoke_token_family(&family, "revoked by the client", now).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub async fn revoke_token_family(&self, family: &str, reason: &str, now: i64) -> StoreResult<bool> {
        let (family, reason) = (family.to_owned(), reason.to_owned());
        self.write(move |mut tx| pin_unit(async move { revoke_family(&mut tx, &family, &reason, now).await })).await
    }

    /// Whether the family exists and is not revoked: end-user access tokens are checked against
    /// it, so logging out or a detected reuse ends them before they expire.
    /// Whether `family` is a session of this partner's user `user` that is not revoked.
    pub async fn token_family_active(
        &self,
        family: &str,
        partner: PartnerId,
        user: &PublicUserId,
    ) -> StoreResult<bool> {
        let revoked: Option<Option<i64>> = with_pool!(self, read, |pool| {
            sqlx::query_scalar(
                "SELECT f.revoked_at FROM token_families f JOIN users u ON u.id = f.user_id
                 WHERE f.id = $1 AND f.partner_id = $2 AND u.public_id = $3",
            )
            .bind(family)
            .bind(partner.get())
            .bind(user.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(matches!(revoked, Some(None)))
    }

    pub async fn end_user(&self, partner: PartnerId, public_id: &PublicUserId) -> StoreResult<Option<EndUser>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT public_id, email, user_role, cip_status, cip_detail, created_at
                 FROM users WHERE partner_id = $1 AND public_id = $2",
            )
            .bind(partner.get())
            .bind(public_id.as_str())
            .fetch_optional(pool)
            .await?
        }))
    }
}
