//! Storage conformance: the same assertions on SQLite and PostgreSQL, against `Store` directly.

use std::time::Duration;

use onboard::auth::credentials::{NewApiKey, NewClient, digests_match, hash_secret};
use onboard::auth::tokens::generate_signing_key;
use onboard::domain::{Environment, PartnerId, PartnerName};
use onboard::store::StoreError;

use crate::helpers::{Backend, open_store};
use crate::on_both_backends;

fn name(n: &str) -> PartnerName {
    PartnerName::parse(n).unwrap()
}

on_both_backends! {
    async fn migrations_are_idempotent_and_current(store: Store) {
        store.migrate().await.unwrap();
        assert!(store.migrations_current().await.unwrap());
        store.ping().await.unwrap();
    }

    async fn partners_round_trip_with_their_credentials(store: Store) {
        let key = NewApiKey::generate(Environment::Live);
        let client = NewClient::generate();
        let created = store.create_partner(&name("Acme"), Environment::Live, &key, &client, 1_000).await.unwrap();
        assert_eq!(created.name, "Acme");
        assert_eq!(created.environment, Environment::Live);
        assert_eq!(store.find_partner(created.id).await.unwrap(), Some(created.clone()));
        assert_eq!(store.list_partners().await.unwrap(), vec![created.clone()]);
        assert_eq!(store.find_partner(PartnerId::new(999_999).unwrap()).await.unwrap(), None);

        let record = store.find_api_key(&key.id).await.unwrap().unwrap();
        assert_eq!(record.partner, created);
        assert!(digests_match(&record.secret_hash, &key.hash));
        assert!(record.usable_at(2_000));
        let client_record = store.find_client(&client.client_id).await.unwrap().unwrap();
        assert_eq!(client_record.partner.id, created.id);
        use secrecy::ExposeSecret;
        assert!(digests_match(&client_record.secret_hash, &hash_secret(client.secret.expose_secret())));
        assert!(store.find_api_key("0000000000000000").await.unwrap().is_none());
    }

    async fn duplicate_credentials_are_conflicts(store: Store) {
        let key = NewApiKey::generate(Environment::Sandbox);
        let client = NewClient::generate();
        store.create_partner(&name("A"), Environment::Sandbox, &key, &client, 0).await.unwrap();
        let err = store.create_partner(&name("B"), Environment::Sandbox, &key, &NewClient::generate(), 0).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        // The failed transaction left no partner behind.
        assert_eq!(store.list_partners().await.unwrap().len(), 1);
    }

    async fn rotation_expires_or_revokes_previous_keys(store: Store) {
        let first = NewApiKey::generate(Environment::Sandbox);
        let partner = store.create_partner(&name("A"), Environment::Sandbox, &first, &NewClient::generate(), 0).await.unwrap();
        let second = NewApiKey::generate(Environment::Sandbox);
        assert!(store.rotate_api_key(partner.id, &second, Duration::from_secs(60), 1_000).await.unwrap());
        let old = store.find_api_key(&first.id).await.unwrap().unwrap();
        assert_eq!(old.expires_at, Some(61_000));
        assert!(old.usable_at(60_999) && !old.usable_at(61_000));

        // A longer grace never extends an earlier expiry.
        let third = NewApiKey::generate(Environment::Sandbox);
        store.rotate_api_key(partner.id, &third, Duration::from_secs(3600), 2_000).await.unwrap();
        assert_eq!(store.find_api_key(&first.id).await.unwrap().unwrap().expires_at, Some(61_000));

        let fourth = NewApiKey::generate(Environment::Sandbox);
        store.rotate_api_key(partner.id, &fourth, Duration::ZERO, 3_000).await.unwrap();
        for id in [&first.id, &second.id, &third.id] {
            assert!(!store.find_api_key(id).await.unwrap().unwrap().usable_at(3_000), "{id}");
        }
        assert!(store.find_api_key(&fourth.id).await.unwrap().unwrap().usable_at(3_000));
        let nobody = PartnerId::new(424_242).unwrap();
        assert!(!store.rotate_api_key(nobody, &NewApiKey::generate(Environment::Live), Duration::ZERO, 0).await.unwrap());
    }

    async fn bootstrap_happens_once_even_when_raced(store: Store) {
        let attempts = (0..8).map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store.bootstrap_partner(&name("Sandbox"), &NewApiKey::generate(Environment::Sandbox), &NewClient::generate(), 0).await
            })
        });
        let mut created = 0;
        for attempt in attempts {
            if attempt.await.unwrap().unwrap().is_some() {
                created += 1;
            }
        }
        assert_eq!(created, 1);
        let partners = store.list_partners().await.unwrap();
        assert_eq!(partners.len(), 1);
        assert_eq!(partners[0].environment, Environment::Sandbox);
    }

    async fn bootstrap_skips_a_database_that_has_partners(store: Store) {
        store.create_partner(&name("Existing"), Environment::Live, &NewApiKey::generate(Environment::Live), &NewClient::generate(), 0).await.unwrap();
        let made = store.bootstrap_partner(&name("Sandbox"), &NewApiKey::generate(Environment::Sandbox), &NewClient::generate(), 0).await.unwrap();
        assert!(made.is_none());
        assert_eq!(store.list_partners().await.unwrap().len(), 1);
    }

    async fn exactly_one_signing_key_is_current(store: Store) {
        let first = generate_signing_key(1_000);
        store.ensure_signing_key(&first).await.unwrap();
        store.ensure_signing_key(&generate_signing_key(2_000)).await.unwrap();
        let keys = store.usable_signing_keys(3_000).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, first.kid);

        let second = generate_signing_key(4_000);
        store.rotate_signing_key(&second, 10_000).await.unwrap();
        let keys = store.usable_signing_keys(5_000).await.unwrap();
        assert_eq!(keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), vec![second.kid.as_str(), first.kid.as_str()]);
        assert_eq!(keys.iter().filter(|k| k.is_current == Some(1)).count(), 1);
        // After its window the retired key is no longer offered for verification.
        let keys = store.usable_signing_keys(10_000).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, second.kid);
    }
}

/// SQLite: commits never checkpoint (`wal_autocheckpoint = 0` on the writer); the background
/// checkpointer copies every committed page into the database file soon after. Fifty small
/// commits stay far below SQLite's own 1,000-page trigger, so without the checkpointer the
/// pages would still be in the WAL only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_reach_the_database_file_through_the_background_checkpointer() {
    use std::str::FromStr;

    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    let (store, db) = open_store(Backend::Sqlite).await.unwrap();
    for i in 0..50 {
        let (key, client) = (NewApiKey::generate(Environment::Live), NewClient::generate());
        store.create_partner(&name(&format!("P{i}")), Environment::Live, &key, &client, 0).await.unwrap();
    }
    let path = db.url.strip_prefix("sqlite://").unwrap().to_owned();
    let options = SqliteConnectOptions::from_str(&db.url).unwrap().read_only(true);
    let mut reader = SqliteConnection::connect_with(&options).await.unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&mut reader).await.unwrap();
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&mut reader).await.unwrap();
    let committed = u64::try_from(pages * page_size).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let on_disk = std::fs::metadata(&path).unwrap().len();
        if on_disk == committed {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "database file {on_disk} bytes, committed {committed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.list_partners().await.unwrap().len(), 50);
}
