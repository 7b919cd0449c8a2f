//! Seed 003's self sign-up (DESIGN.md §1): step 1 records the pending sign-up and e-mails a
//! code, step 2 checks code and password and creates the user, and the end user's refresh
//! tokens rotate. Every decision that must hold across concurrent requests is the database's
//! (`store::signups`); the rules of the flow — attempts, expiry, which mail goes out, which
//! answer a wrong code gets — are here.
//!
//! Step 1 answers the same whether or not the address already has an account: that decides
//! only which e-mail is sent, never the answer, its timing (both paths hash the password and
//! write the same rows) or the throttle.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::end_user::{IssuedRefreshToken, parse_refresh_token};
use crate::auth::passwords::{HashError, PasswordHasher};
use crate::auth::tokens::KeyRing;
use crate::domain::signup::{ConfirmCode, Password, PasswordRule, UserRole};
use crate::domain::{Email, Partner, PublicUserId, secs_to_ms};
use crate::mail::{MAIL_JOB, Outgoing};
use crate::store::{
    CompleteSignup, NewJob, NewSignup, Rotation, SignupCompletion, SignupStart, Store, StoreError, StoreResult,
    TokenOwner,
};

/// Seed 003's two-step sign-up (`POST /users`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignupSettings {
    /// How long an e-mailed code is accepted.
    pub code_ttl_secs: u64,
    /// Wrong codes (or passwords) before the pending sign-up is locked until a new step 1.
    pub max_attempts: u32,
    /// Digits of the codes live partners' users receive (sandbox partners always accept `12345`).
    pub code_length: u32,
    /// Least time between two codes e-mailed to one address of one partner.
    pub resend_interval_secs: u64,
    /// Sign-up requests (both steps) per minute from one client IP.
    pub per_ip_per_minute: u32,
    /// Sign-up requests per minute naming one e-mail address of one partner.
    pub per_email_per_minute: u32,
    /// Sign-up requests per minute to one partner.
    pub per_partner_per_minute: u32,
    /// Lifetime of the end-user access tokens step 2 and refreshes issue (the seed says 86400).
    pub access_token_ttl_secs: u64,
    /// Lifetime of one refresh token; each use replaces it with a new one (rotation).
    pub refresh_token_ttl_secs: u64,
    /// Take the client IP from the last `X-Forwarded-For` hop (only behind a proxy you run).
    pub trust_forwarded_for: bool,
}

impl Default for SignupSettings {
    fn default() -> Self {
        Self {
            code_ttl_secs: 600,
            max_attempts: 5,
            code_length: 5,
            resend_interval_secs: 60,
            per_ip_per_minute: 60,
            per_email_per_minute: 10,
            per_partner_per_minute: 6_000,
            access_token_ttl_secs: 86_400,
            refresh_token_ttl_secs: 30 * 86_400,
            trust_forwarded_for: false,
        }
    }
}

/// Why a sign-up step or a refresh was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("the password breaks the policy")]
    Password(Vec<PasswordRule>),
    #[error("a code was sent to this address moments ago")]
    TooSoon { retry_after_ms: i64 },
    #[error("not the code e-mailed for this address (or a newer one replaced it)")]
    WrongCode,
    #[error("the code has expired")]
    ExpiredCode,
    #[error("the code was tried too many times")]
    ExhaustedCode,
    #[error("not the password given in the first step")]
    WrongPassword,
    #[error("an account with this e-mail address already exists")]
    EmailTaken,
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    #[error("the refresh token was already used; its session is now revoked")]
    ReusedRefreshToken,
    #[error(transparent)]
    Hashing(#[from] HashError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A sign-up request, parsed at the edge. The password is checked against the policy in step 1
/// and against step 1's hash in step 2.
pub struct SignupRequest {
    pub partner: Partner,
    pub email: Email,
    pub password: String,
    pub role: UserRole,
}

/// What the sign-up use cases need from the running service.
#[derive(Clone, Copy)]
pub struct Signups<'a> {
    pub store: &'a Store,
    pub passwords: &'a PasswordHasher,
    pub settings: &'a SignupSettings,
    /// Milliseconds since the epoch. Step 1 reads it after hashing, which may have waited for a
    /// hashing thread: the code's lifetime and the resend throttle count from when it is sent.
    pub clock: fn() -> i64,
}

/// A signed-in end user: whose session it is, and its new refresh token.
pub struct SignedIn {
    pub owner: TokenOwner,
    pub refresh: IssuedRefreshToken,
}

impl Signups<'_> {
    /// Step 1: checks the password policy, hashes the password, records the pending sign-up and
    /// enqueues its mail (the code, or "you already have an account"). Returns whether the
    /// address had an account, for metrics only.
    pub async fn start(&self, request: &SignupRequest) -> Result<bool, SignupError> {
        let SignupRequest { partner, email, password, role } = request;
        let (local, domain) = email.as_str().rsplit_once('@').unwrap_or_default();
        let domain_label = domain.split('.').next().unwrap_or_default();
        let password =
            Password::parse(password, &[email.as_str(), local, domain_label]).map_err(SignupError::Password)?;
        let password_hash = self.passwords.hash(password.expose()).await?;
        let now = (self.clock)();
        let code = ConfirmCode::issue(partner.environment, self.settings.code_length);
        let mail = |outgoing: Outgoing| {
            let mut job = NewJob::new(MAIL_JOB, serde_json::to_value(outgoing).expect("messages serialise"), now);
            job.partner = Some(partner.id);
            job
        };
        let to = email.as_str().to_owned();
        let signup = NewSignup {
            partner: partner.id,
            email: email.clone(),
            password_hash,
            role: *role,
            code_hash: code.digest(partner.id, email),
            expires_at: now + secs_to_ms(self.settings.code_ttl_secs),
            code_mail: mail(Outgoing::SignupCode {
                to: to.clone(),
                partner: partner.name.clone(),
                code: code.expose().to_owned(),
                valid_minutes: self.settings.code_ttl_secs.div_ceil(60),
            }),
            exists_mail: mail(Outgoing::AccountExists { to, partner: partner.name.clone() }),
        };
        let resend_interval = secs_to_ms(self.settings.resend_interval_secs);
        match self.store.start_signup(&signup, resend_interval, now).await? {
            SignupStart::Sent { existing } => {
                metrics::counter!("signup_started_total", "existing" => existing.to_string()).increment(1);
                Ok(existing)
            }
            SignupStart::TooSoon { retry_after_ms } => Err(SignupError::TooSoon { retry_after_ms }),
        }
    }

    /// Step 2: checks the code (cheap, first: a wrong code never costs a password hash), then
    /// the password, and creates the user with its first session — or, when this step 2 had
    /// already succeeded, a new session of the same user. Every failed attempt counts; the one
    /// that uses up the last answers `ExhaustedCode`.
    pub async fn confirm(
        &self,
        request: &SignupRequest,
        code: &ConfirmCode,
        now: i64,
    ) -> Result<SignedIn, SignupError> {
        let SignupRequest { partner, email, password, role } = request;
        let max_attempts = i64::from(self.settings.max_attempts);
        let pending = self.store.pending_signup(partner.id, email).await?.ok_or(SignupError::WrongCode)?;
        if pending.attempts >= max_attempts {
            return Err(SignupError::ExhaustedCode);
        }
        if pending.expires_at <= now {
            return Err(SignupError::ExpiredCode);
        }
        let refused = if pending.for_existing_account() || !code.matches(partner.id, email, &pending.code_hash) {
            Some(SignupError::WrongCode)
        } else if !self.passwords.verify(password, &pending.password_hash).await? {
            Some(SignupError::WrongPassword)
        } else {
            None
        };
        if let Some(refused) = refused {
            let attempts = self.store.fail_signup_attempt(partner.id, email, pending.code_sent_at).await?;
            metrics::counter!("signup_code_failures_total").increment(1);
            return Err(match attempts {
                Some(n) if n >= max_attempts => SignupError::ExhaustedCode,
                _ => refused,
            });
        }
        let refresh = self.new_refresh_token(now);
        // The account keeps step 1's spelling of the address (step 2 may differ only in case).
        let spelled = Email::parse(&pending.email).unwrap_or_else(|_| email.clone());
        let completion = CompleteSignup {
            partner: partner.id,
            email: spelled,
            code_sent_at: pending.code_sent_at,
            max_attempts,
            public_id: PublicUserId::generate(),
            password_hash: pending.password_hash,
            role: *role,
            refresh: refresh.record.clone(),
            now,
        };
        let owner = match self.store.complete_signup(&completion).await? {
            SignupCompletion::Created(owner) => {
                metrics::counter!("signup_completed_total").increment(1);
                owner
            }
            SignupCompletion::Replayed(owner) => owner,
            SignupCompletion::Stale => return Err(SignupError::WrongCode),
            SignupCompletion::EmailTaken => return Err(SignupError::EmailTaken),
        };
        Ok(SignedIn { owner, refresh })
    }

    /// Spends an end user's refresh token for a new one of the same family. End users are
    /// public clients (no client secret), so rotation is what makes a stolen refresh token
    /// detectable: whichever of thief and user presents it second revokes the whole family, and
    /// the other's tokens stop working too.
    pub async fn refresh(&self, presented: &str, now: i64) -> Result<SignedIn, SignupError> {
        let (id, hash) = parse_refresh_token(presented).ok_or(SignupError::InvalidRefreshToken)?;
        let next = self.new_refresh_token(now);
        match self.store.rotate_refresh_token(&id, &hash, &next.record, now).await? {
            // The store files `next` under the presented token's family.
            Rotation::Rotated(owner) => Ok(SignedIn { owner, refresh: next }),
            Rotation::Reused => {
                tracing::warn!(refresh_token_id = %id, "refresh token reused; its family is revoked");
                metrics::counter!("refresh_token_reuse_total").increment(1);
                Err(SignupError::ReusedRefreshToken)
            }
            Rotation::Invalid => Err(SignupError::InvalidRefreshToken),
        }
    }

    fn new_refresh_token(&self, now: i64) -> IssuedRefreshToken {
        IssuedRefreshToken::generate(None, now, Duration::from_secs(self.settings.refresh_token_ttl_secs))
    }
}

/// Ends an end user's session by one of its tokens (RFC 7009): a refresh token whose secret
/// matches, or an access token that verifies. Anything else is ignored, so the answer cannot be
/// used to probe tokens.
pub async fn revoke_session(store: &Store, keys: &KeyRing, token: &str, now: i64) -> StoreResult<()> {
    if let Some((id, hash)) = parse_refresh_token(token) {
        store.revoke_refresh_token(&id, &hash, now).await?;
    } else if let Ok(claims) = keys.verify_user_token(token).await {
        store.revoke_token_family(&claims.sid, "revoked by the client", now).await?;
    }
    Ok(())
}
