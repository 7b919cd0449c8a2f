//! KYC rows: a partner's provider settings (secrets stay sealed here: `core::kyc` seals and
//! `kyc::` opens them), the applicant of each user, and every provider webhook as received.
//! The rules of what a webhook does live in `core::kyc`.

use super::{Store, StoreResult, Tx};
use crate::domain::PartnerId;

/// A partner's KYC settings as stored (secrets sealed).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PartnerKycRecord {
    pub partner_id: i64,
    pub provider: String,
    pub level_name: String,
    pub required_for_prospects: bool,
    pub app_token: Option<Vec<u8>>,
    pub secret_key: Option<Vec<u8>>,
    pub webhook_secret: Vec<u8>,
    pub updated_at: i64,
}

/// The provider's applicant of one user.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApplicantRecord {
    pub user_id: i64,
    pub partner_id: i64,
    pub applicant_id: String,
    pub level_name: String,
    pub review_status: Option<String>,
    pub review_answer: Option<String>,
    pub reject_type: Option<String>,
    pub reject_labels: Option<String>,
    pub last_event_ms: i64,
    pub created_at: i64,
}

/// A provider webhook (or a reconciliation reading) as received and authenticated.
#[derive(Debug, Clone)]
pub struct NewKycWebhook {
    pub partner_id: i64,
    pub user_id: Option<i64>,
    pub source: &'static str,
    pub type_name: String,
    pub applicant_id: Option<String>,
    pub created_at_ms: i64,
    pub body_sha256: Vec<u8>,
    pub raw_body: String,
    pub digest_alg: String,
    pub effect: String,
    pub received_at: i64,
}

/// Inserts or replaces the partner's settings in the open transaction.
pub async fn upsert_partner(tx: &mut Tx<'_>, r: &PartnerKycRecord) -> StoreResult<()> {
    write_partner(tx, r, true).await
}

/// Inserts the partner's settings unless it has some (the sandbox provider's first use); the
/// stored settings either way.
pub async fn insert_partner_if_absent(tx: &mut Tx<'_>, r: &PartnerKycRecord) -> StoreResult<PartnerKycRecord> {
    write_partner(tx, r, false).await?;
    Ok(partner_in(tx, r.partner_id).await?.expect("the row was inserted or already there"))
}

async fn write_partner(tx: &mut Tx<'_>, r: &PartnerKycRecord, replace: bool) -> StoreResult<()> {
    macro_rules! insert {
        ($on_conflict:literal) => {
            concat!(
                "INSERT INTO partner_kyc (partner_id, provider, level_name, required_for_prospects, app_token,
                    secret_key, webhook_secret, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (partner_id) ",
                $on_conflict
            )
        };
    }
    let sql = if replace {
        insert!(
            "DO UPDATE SET provider = excluded.provider, level_name = excluded.level_name,
                required_for_prospects = excluded.required_for_prospects, app_token = excluded.app_token,
                secret_key = excluded.secret_key, webhook_secret = excluded.webhook_secret,
                updated_at = excluded.updated_at"
        )
    } else {
        insert!("DO NOTHING")
    };
    on_tx!(tx, |conn| {
        sqlx::query(sql)
            .bind(r.partner_id)
            .bind(&r.provider)
            .bind(&r.level_name)
            .bind(r.required_for_prospects)
            .bind(r.app_token.as_deref())
            .bind(r.secret_key.as_deref())
            .bind(&r.webhook_secret)
            .bind(r.updated_at)
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}

pub async fn partner_in(tx: &mut Tx<'_>, partner: i64) -> StoreResult<Option<PartnerKycRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(
            "SELECT partner_id, provider, level_name, required_for_prospects, app_token, secret_key, webhook_secret,
                    updated_at FROM partner_kyc WHERE partner_id = $1",
        )
        .bind(partner)
        .fetch_optional(conn)
        .await?
    }))
}

/// Whether the partner's users can verify their identity: it has KYC settings, or it is a
/// sandbox partner (the simulated provider needs none). Read in the open transaction.
pub async fn available(tx: &mut Tx<'_>, partner: PartnerId) -> StoreResult<bool> {
    // COUNT(*): an integer of one width on both backends.
    let available: i64 = on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM partners p WHERE p.id = $1
               AND (p.environment = 'sandbox' OR EXISTS (SELECT 1 FROM partner_kyc k WHERE k.partner_id = p.id))",
        )
        .bind(partner.get())
        .fetch_one(conn)
        .await?
    });
    Ok(available == 1)
}

macro_rules! applicant_columns {
    () => {
        "user_id, partner_id, applicant_id, level_name, review_status, review_answer, reject_type, reject_labels,
         last_event_ms, created_at"
    };
}

pub async fn applicant_in(tx: &mut Tx<'_>, user: i64) -> StoreResult<Option<ApplicantRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(concat!("SELECT ", applicant_columns!(), " FROM kyc_applicants WHERE user_id = $1"))
            .bind(user)
            .fetch_optional(conn)
            .await?
    }))
}

/// Records the user's applicant unless it has one; the stored applicant either way.
pub async fn insert_applicant(
    tx: &mut Tx<'_>,
    user: i64,
    partner: i64,
    applicant_id: &str,
    level_name: &str,
    now: i64,
) -> StoreResult<ApplicantRecord> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO kyc_applicants (user_id, partner_id, applicant_id, level_name, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user)
        .bind(partner)
        .bind(applicant_id)
        .bind(level_name)
        .bind(now)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(applicant_in(tx, user).await?.expect("the row was inserted or already there"))
}

/// The user of `partner` whose applicant `applicant_id` is, read in the open transaction.
pub async fn applicant_owner(tx: &mut Tx<'_>, partner: i64, applicant_id: &str) -> StoreResult<Option<i64>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT user_id FROM kyc_applicants WHERE partner_id = $1 AND applicant_id = $2")
            .bind(partner)
            .bind(applicant_id)
            .fetch_optional(conn)
            .await?
    }))
}

/// What an applied event leaves on the applicant.
#[derive(Debug, Clone, Default)]
pub struct ApplicantUpdate<'a> {
    pub review_status: Option<&'a str>,
    pub review_answer: Option<&'a str>,
    pub reject_type: Option<&'a str>,
    pub reject_labels: Option<String>,
    pub last_event_ms: i64,
}

pub async fn update_applicant(tx: &mut Tx<'_>, user: i64, u: &ApplicantUpdate<'_>, now: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE kyc_applicants SET review_status = $1, review_answer = $2, reject_type = $3, reject_labels = $4,
                last_event_ms = $5, updated_at = $6 WHERE user_id = $7",
        )
        .bind(u.review_status)
        .bind(u.review_answer)
        .bind(u.reject_type)
        .bind(u.reject_labels.as_deref())
        .bind(u.last_event_ms)
        .bind(now)
        .bind(user)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

/// Whether this partner already received exactly this body.
pub async fn webhook_seen(tx: &mut Tx<'_>, partner: i64, body_sha256: &[u8]) -> StoreResult<bool> {
    let seen: Option<i64> = on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT id FROM kyc_webhooks WHERE partner_id = $1 AND body_sha256 = $2")
            .bind(partner)
            .bind(body_sha256)
            .fetch_optional(conn)
            .await?
    });
    Ok(seen.is_some())
}

/// Appends the webhook; false when this partner already has this body (a retried delivery).
pub async fn insert_webhook(tx: &mut Tx<'_>, w: &NewKycWebhook) -> StoreResult<bool> {
    let inserted = on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO kyc_webhooks (partner_id, user_id, source, type, applicant_id, created_at_ms, body_sha256,
                raw_body, digest_alg, effect, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (partner_id, body_sha256) DO NOTHING",
        )
        .bind(w.partner_id)
        .bind(w.user_id)
        .bind(w.source)
        .bind(&w.type_name)
        .bind(w.applicant_id.as_deref())
        .bind(w.created_at_ms)
        .bind(&w.body_sha256)
        .bind(&w.raw_body)
        .bind(&w.digest_alg)
        .bind(&w.effect)
        .bind(w.received_at)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(inserted == 1)
}

/// A sealed value and where it lives, for `onboard keys rewrap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub partner_id: i64,
    /// `app_token`, `secret_key` or `webhook_secret`.
    pub column: &'static str,
    pub value: Vec<u8>,
}

/// Every sealed provider secret, read in the open transaction.
pub async fn sealed_secrets(tx: &mut Tx<'_>) -> StoreResult<Vec<SealedValue>> {
    /// partner, app token, secret key, webhook secret (the last always set).
    type Row = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<u8>);
    let rows: Vec<Row> = on_tx!(tx, |conn| {
        sqlx::query_as("SELECT partner_id, app_token, secret_key, webhook_secret FROM partner_kyc ORDER BY partner_id")
            .fetch_all(conn)
            .await?
    });
    let mut values = Vec::new();
    for (partner_id, app_token, secret_key, webhook_secret) in rows {
        let columns = [("app_token", app_token), ("secret_key", secret_key), ("webhook_secret", Some(webhook_secret))];
        for (column, value) in columns {
            if let Some(value) = value {
                values.push(SealedValue { partner_id, column, value });
            }
        }
    }
    Ok(values)
}

/// Replaces one sealed secret (after resealing it under the current KEK).
/// Replaces one sealed secret with `resealed` unless it changed since it was read (an operator's
/// new secret committed meanwhile is kept: compare-and-swap, on both backends' isolation levels).
pub async fn replace_sealed(tx: &mut Tx<'_>, read: &SealedValue, resealed: &[u8]) -> StoreResult<()> {
    // The column name comes from `SealedValue::column`, one of three literals.
    let sql = match read.column {
        "app_token" => "UPDATE partner_kyc SET app_token = $1 WHERE partner_id = $2 AND app_token = $3",
        "secret_key" => "UPDATE partner_kyc SET secret_key = $1 WHERE partner_id = $2 AND secret_key = $3",
        _ => "UPDATE partner_kyc SET webhook_secret = $1 WHERE partner_id = $2 AND webhook_secret = $3",
    };
    on_tx!(tx, |conn| {
        sqlx::query(sql).bind(resealed).bind(read.partner_id).bind(&read.value).execute(conn).await.map(drop)?
    });
    Ok(())
}

impl Store {
    /// The partner's KYC settings (secrets sealed).
    pub async fn partner_kyc(&self, partner: PartnerId) -> StoreResult<Option<PartnerKycRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT partner_id, provider, level_name, required_for_prospects, app_token, secret_key, webhook_secret,
                        updated_at FROM partner_kyc WHERE partner_id = $1",
            )
            .bind(partner.get())
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Whether the partner requires KYC of its seed-002 prospects.
    pub async fn kyc_required_for_prospects(&self, partner: PartnerId) -> StoreResult<bool> {
        let required: Option<bool> = with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT required_for_prospects FROM partner_kyc WHERE partner_id = $1")
                .bind(partner.get())
                .fetch_optional(pool)
                .await?
        });
        Ok(required.unwrap_or(false))
    }

    pub async fn kyc_applicant(&self, user: i64) -> StoreResult<Option<ApplicantRecord>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(concat!("SELECT ", applicant_columns!(), " FROM kyc_applicants WHERE user_id = $1"))
                .bind(user)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The user an external user id (our public id) names, with its partner: how an inbound
    /// webhook finds whose secret verifies it.
    pub async fn kyc_subject(&self, public_id: &str) -> StoreResult<Option<(i64, i64)>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT id, partner_id FROM users WHERE public_id = $1")
                .bind(public_id)
                .fetch_optional(pool)
                .await?
        }))
    }
}
