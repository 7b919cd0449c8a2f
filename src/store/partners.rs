//! Partners and their credentials: rows written by `core::partners`.

use std::time::Duration;

use super::records::PartnerRow;
use super::{Store, StoreError, StoreResult, Tx, boxed, pin_unit};
use crate::domain::credentials::StoredSecret;
use crate::domain::{Environment, Partner, PartnerId, PartnerName};

/// Inserts a partner in the open transaction.
pub async fn insert(tx: &mut Tx<'_>, name: &PartnerName, environment: Environment, now: i64) -> StoreResult<Partner> {
    let row: PartnerRow = on_tx!(tx, |conn| {
        sqlx::query_as(
            "INSERT INTO partners (name, environment, created_at) VALUES ($1, $2, $3)
             RETURNING id, name, environment, created_at",
        )
        .bind(name.as_str())
        .bind(environment.as_str())
        .bind(now)
        .fetch_one(conn)
        .await?
    });
    Partner::try_from(row)
}

/// How many partners there are, read in the open transaction.
pub async fn count(tx: &mut Tx<'_>) -> StoreResult<i64> {
    Ok(on_tx!(tx, |conn| sqlx::query_scalar("SELECT COUNT(*) FROM partners").fetch_one(conn).await?))
}

/// Marks `partner` as the one the first start created. False when another node's partner
/// already is (the `bootstrap` row's primary key decides).
pub async fn claim_bootstrap(tx: &mut Tx<'_>, partner: PartnerId, now: i64) -> StoreResult<bool> {
    let claimed = on_tx!(tx, |conn| {
        sqlx::query("INSERT INTO bootstrap (id, partner_id, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(partner.get())
            .bind(now)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(claimed == 1)
}

/// Whether the partner exists, read in the open transaction.
pub async fn exists(tx: &mut Tx<'_>, partner: PartnerId) -> StoreResult<bool> {
    let found: Option<i64> = on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT id FROM partners WHERE id = $1").bind(partner.get()).fetch_optional(conn).await?
    });
    Ok(found.is_some())
}

/// A partner's credential: what a stored secret opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The `PartnerApiKey` header.
    ApiKey,
    /// OAuth client credentials (`POST /oauth/token`).
    Client,
}

/// Stores a credential of `partner` in the open transaction.
pub async fn insert_credential(
    tx: &mut Tx<'_>,
    kind: Credential,
    partner: PartnerId,
    secret: &impl StoredSecret,
    now: i64,
) -> StoreResult<()> {
    let sql = match kind {
        Credential::ApiKey => "INSERT INTO api_keys (id, partner_id, secret_hash, created_at) VALUES ($1, $2, $3, $4)",
        Credential::Client => {
            "INSERT INTO oauth_clients (client_id, partner_id, secret_hash, created_at) VALUES ($1, $2, $3, $4)"
        }
    };
    on_tx!(tx, |conn| {
        sqlx::query(sql)
            .bind(secret.id())
            .bind(partner.get())
            .bind(&secret.hash()[..])
            .bind(now)
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}

/// Ends the partner's live API keys: at once when `grace` is zero, else `grace` from `now` at
/// the latest (an earlier expiry is kept).
pub async fn expire_api_keys(tx: &mut Tx<'_>, partner: PartnerId, grace: Duration, now: i64) -> StoreResult<()> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    on_tx!(tx, |conn| {
        if grace_ms == 0 {
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE partner_id = $1 AND revoked_at IS NULL")
                .bind(partner.get())
                .bind(now)
                .execute(conn)
                .await
                .map(drop)?
        } else {
            sqlx::query(
                "UPDATE api_keys SET expires_at = $2
                 WHERE partner_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
            )
            .bind(partner.get())
            .bind(now.saturating_add(grace_ms))
            .execute(conn)
            .await
            .map(drop)?
        }
    });
    Ok(())
}

/// Why a first start's sandbox partner was not made (an `Err` rolls the write back).
enum Bootstrap {
    /// The database has partners, or another node starting at the same time made it.
    NotFirst,
    Store(StoreError),
}

impl From<StoreError> for Bootstrap {
    fn from(err: StoreError) -> Self {
        Bootstrap::Store(err)
    }
}

/// Creates a partner with its first API key and OAuth client, in the open transaction.
pub async fn create(
    tx: &mut Tx<'_>,
    name: &PartnerName,
    environment: Environment,
    key: &impl StoredSecret,
    client: &impl StoredSecret,
    now: i64,
) -> StoreResult<Partner> {
    let partner = insert(tx, name, environment, now).await?;
    insert_credential(tx, Credential::ApiKey, partner.id, key, now).await?;
    insert_credential(tx, Credential::Client, partner.id, client, now).await?;
    Ok(partner)
}

/// Issues `key` as a new API key of `partner` in the open transaction; the keys still valid
/// stay valid for `grace` (at most; an earlier expiry is kept), or are revoked at once when
/// `grace` is zero. False when the partner does not exist.
pub async fn rotate_key(
    tx: &mut Tx<'_>,
    partner: PartnerId,
    key: &impl StoredSecret,
    grace: Duration,
    now: i64,
) -> StoreResult<bool> {
    if !exists(tx, partner).await? {
        return Ok(false);
    }
    expire_api_keys(tx, partner, grace, now).await?;
    insert_credential(tx, Credential::ApiKey, partner, key, now).await?;
    Ok(true)
}

impl Store {
    /// Creates a partner with its first API key and OAuth client, in one write.
    pub async fn create_partner(
        &self,
        name: &PartnerName,
        environment: Environment,
        key: &impl StoredSecret,
        client: &impl StoredSecret,
        now: i64,
    ) -> StoreResult<Partner> {
        let (name, key, client) = (name.clone(), key.digest(), client.digest());
        self.write(move |mut tx| pin_unit(async move { create(&mut tx, &name, environment, &key, &client, now).await }))
            .await
    }

    /// On first start only: creates the sandbox partner when the database has none. Exactly one
    /// of several nodes starting together gets `Some` (the `bootstrap` row decides; the others'
    /// partners roll back).
    pub async fn bootstrap_partner(
        &self,
        name: &PartnerName,
        key: &impl StoredSecret,
        client: &impl StoredSecret,
        now: i64,
    ) -> StoreResult<Option<Partner>> {
        let (name, key, client) = (name.clone(), key.digest(), client.digest());
        let made = self
            .write(move |mut tx| {
                boxed(async move {
                    if count(&mut tx).await? > 0 {
                        return Err(Bootstrap::NotFirst);
                    }
                    let partner = create(&mut tx, &name, Environment::Sandbox, &key, &client, now).await?;
                    if !claim_bootstrap(&mut tx, partner.id, now).await? {
                        return Err(Bootstrap::NotFirst); // rolls back the partner and its credentials
                    }
                    Ok::<_, Bootstrap>(partner)
                })
            })
            .await;
        match made {
            Ok(partner) => Ok(Some(partner)),
            Err(Bootstrap::NotFirst) => Ok(None),
            Err(Bootstrap::Store(err)) => Err(err),
        }
    }

    /// Issues a new API key. Keys that are still valid stay valid for `grace` (at most; an
    /// earlier expiry is kept), or are revoked at once when `grace` is zero. False when the
    /// partner does not exist.
    pub async fn rotate_api_key(
        &self,
        partner: PartnerId,
        key: &impl StoredSecret,
        grace: Duration,
        now: i64,
    ) -> StoreResult<bool> {
        let key = key.digest();
        self.write(move |mut tx| pin_unit(async move { rotate_key(&mut tx, partner, &key, grace, now).await })).await
    }
}
