//! Consent codes waiting to be entered, the evidence of each consent given, and how a partner's
//! users confirm consents.

use super::{Store, StoreError, StoreResult, Tx};
use crate::domain::PartnerId;
use crate::domain::consent::{ConsentConfirmation, ConsentKind, OtpChannel};

/// A code to store for one consent of one user (it replaces any earlier one).
#[derive(Debug, Clone)]
pub struct NewConsentCode {
    pub user_id: i64,
    pub partner_id: i64,
    pub consent: ConsentKind,
    pub channel: OtpChannel,
    /// Masked, as shown to the partner and kept as evidence.
    pub sent_to: String,
    pub document_version: String,
    pub code_hash: Vec<u8>,
    pub sent_at: i64,
    pub expires_at: i64,
    pub sends: i64,
    pub window_started_at: i64,
}

/// A code waiting to be entered.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingConsentCode {
    pub channel: String,
    pub sent_to: String,
    pub document_version: String,
    pub code_hash: Vec<u8>,
    pub attempts: i64,
    pub sent_at: i64,
    pub expires_at: i64,
    pub sends: i64,
    pub window_started_at: i64,
}

/// How one consent was given.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ConsentEvidence {
    pub consent: String,
    /// `otp` or `partner`.
    pub method: String,
    pub channel: Option<String>,
    pub sent_to: Option<String>,
    pub document_version: Option<String>,
    pub code_sent_at: Option<i64>,
    pub given_at: i64,
    pub actor: String,
}

/// How `partner`'s users confirm consents, read in the open transaction.
pub async fn confirmation(tx: &mut Tx<'_>, partner: i64) -> StoreResult<ConsentConfirmation> {
    let stored: String = on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT consent_confirmation FROM partners WHERE id = $1")
            .bind(partner)
            .fetch_one(conn)
            .await?
    });
    ConsentConfirmation::parse(&stored)
        .ok_or_else(|| StoreError::Corrupt(format!("partner {partner}: consent_confirmation")))
}

/// The code waiting for `consent` of `user`, if any.
pub async fn pending(tx: &mut Tx<'_>, user: i64, consent: ConsentKind) -> StoreResult<Option<PendingConsentCode>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(
            "SELECT channel, sent_to, document_version, code_hash, attempts, sent_at, expires_at, sends, window_started_at
             FROM consent_codes WHERE user_id = $1 AND consent = $2",
        )
        .bind(user)
        .bind(consent.as_str())
        .fetch_optional(conn)
        .await?
    }))
}

/// Stores `code` in place of any earlier one for the same consent.
pub async fn replace(tx: &mut Tx<'_>, code: &NewConsentCode) -> StoreResult<()> {
    remove(tx, code.user_id, code.consent).await?;
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO consent_codes (user_id, consent, partner_id, channel, sent_to, document_version, code_hash,
                                        attempts, sent_at, expires_at, sends, window_started_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11)",
        )
        .bind(code.user_id)
        .bind(code.consent.as_str())
        .bind(code.partner_id)
        .bind(code.channel.as_str())
        .bind(&code.sent_to)
        .bind(&code.document_version)
        .bind(&code.code_hash)
        .bind(code.sent_at)
        .bind(code.expires_at)
        .bind(code.sends)
        .bind(code.window_started_at)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Counts one wrong attempt; returns the attempts made so far.
pub async fn count_attempt(tx: &mut Tx<'_>, user: i64, consent: ConsentKind) -> StoreResult<i64> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "UPDATE consent_codes SET attempts = attempts + 1 WHERE user_id = $1 AND consent = $2 RETURNING attempts",
        )
        .bind(user)
        .bind(consent.as_str())
        .fetch_one(conn)
        .await?
    }))
}

pub async fn remove(tx: &mut Tx<'_>, user: i64, consent: ConsentKind) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query("DELETE FROM consent_codes WHERE user_id = $1 AND consent = $2")
            .bind(user)
            .bind(consent.as_str())
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Appends how a consent was given.
pub async fn record_evidence(tx: &mut Tx<'_>, user: i64, partner: i64, evidence: &ConsentEvidence) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO consent_evidence (user_id, partner_id, consent, method, channel, sent_to, document_version,
                                           code_sent_at, given_at, actor)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(user)
        .bind(partner)
        .bind(&evidence.consent)
        .bind(&evidence.method)
        .bind(&evidence.channel)
        .bind(&evidence.sent_to)
        .bind(&evidence.document_version)
        .bind(evidence.code_sent_at)
        .bind(evidence.given_at)
        .bind(&evidence.actor)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

impl Store {
    /// The evidence of `user`'s consents, oldest first.
    pub async fn consent_evidence(&self, user: i64) -> StoreResult<Vec<ConsentEvidence>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT consent, method, channel, sent_to, document_version, code_sent_at, given_at, actor
                 FROM consent_evidence WHERE user_id = $1 ORDER BY id",
            )
            .bind(user)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn consent_confirmation(&self, partner: PartnerId) -> StoreResult<ConsentConfirmation> {
        let stored: Option<String> = with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT consent_confirmation FROM partners WHERE id = $1")
                .bind(partner.get())
                .fetch_optional(pool)
                .await?
        });
        Ok(stored.as_deref().and_then(ConsentConfirmation::parse).unwrap_or(ConsentConfirmation::Partner))
    }
}
