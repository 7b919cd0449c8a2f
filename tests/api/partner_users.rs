//! Seed 000: `POST /partner/users` with `externalUserId` idempotency, on both backends.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};
use crate::on_both_backends;

impl TestApp {
    pub async fn register(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/partner/users"))
            .header("PartnerApiKey", key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn registration(&self, key: &str, external_id: &str) -> reqwest::Response {
        let path = format!(
            "/partner/users/{}",
            percent_encoding::utf8_percent_encode(external_id, percent_encoding::NON_ALPHANUMERIC)
        );
        self.client.get(self.url(&path)).header("PartnerApiKey", key).send().await.expect("request")
    }

    /// A second partner's API key.
    pub async fn other_partner_key(&self) -> String {
        use onboard::auth::credentials::{NewApiKey, NewClient};
        use secrecy::ExposeSecret;
        let env = onboard::domain::Environment::Sandbox;
        let key = NewApiKey::generate(env);
        let name = onboard::domain::PartnerName::parse("Other").unwrap();
        self.store().create_partner(&name, env, &key, &NewClient::generate(), 0).await.unwrap();
        key.key.expose_secret().to_owned()
    }
}

on_both_backends! {
    async fn the_seeds_three_use_cases(app) {
        let key = &app.sandbox.api_key;
        let cases = [
            (json!({"externalUserId": "91b95244-72ca-459e-88d2-281c3e2935c1", "method": "EMAIL", "identifier": "money@capa.fi", "type": "INDIVIDUAL", "alias": "Satoshi Nakamoto"}), Some("money@capa.fi")),
            (json!({"externalUserId": "ext-phone", "method": "PHONE_NUMBER", "identifier": "+52 440 123 4567", "type": "BUSINESS"}), Some("+524401234567")),
            (json!({"externalUserId": "ext-none", "method": "NONE", "identifier": null, "type": "INDIVIDUAL"}), None),
        ];
        for (body, identifier) in cases {
            let response = app.register(key, &body).await;
            assert_eq!(response.status(), 201, "{body}");
            let created: Value = response.json().await.unwrap();
            assert!(created["userId"].as_str().unwrap().starts_with("usr:"));
            assert_eq!(created["externalUserId"], body["externalUserId"]);
            assert_eq!(created["method"], body["method"]);
            assert_eq!(created["identifier"].as_str(), identifier, "phones are stored in E.164");
            assert_eq!(created["type"], body["type"]);

            let read: Value = app.registration(key, body["externalUserId"].as_str().unwrap()).await.json().await.unwrap();
            assert_eq!(read, created);
        }
        assert_eq!(app.users().await, 3, "they are users like any other");
    }

    async fn a_replay_returns_200_with_the_same_body(app) {
        let key = &app.sandbox.api_key;
        let body = json!({"externalUserId": "replay", "method": "EMAIL", "identifier": "Ana@Example.org", "type": "INDIVIDUAL", "alias": "Ana"});
        let first = app.register(key, &body).await;
        assert_eq!(first.status(), 201);
        let first: Value = first.json().await.unwrap();
        // The same registration, with the e-mail's domain in another case and the alias padded.
        let respelled = json!({"externalUserId": "replay", "method": "EMAIL", "identifier": "Ana@EXAMPLE.ORG", "type": "INDIVIDUAL", "alias": "  Ana "});
        let again = app.register(key, &respelled).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.json::<Value>().await.unwrap(), first);
        assert_eq!(app.users().await, 1);
    }

    async fn a_conflicting_replay_is_409_and_changes_nothing(app) {
        let key = &app.sandbox.api_key;
        let body = json!({"externalUserId": "c1", "method": "EMAIL", "identifier": "a@example.org", "type": "INDIVIDUAL"});
        let created: Value = app.register(key, &body).await.json().await.unwrap();
        let changed = json!({"externalUserId": "c1", "method": "PHONE_NUMBER", "identifier": "+524401234567", "type": "BUSINESS", "alias": "New"});
        let problem = assert_problem(app.register(key, &changed).await, 409).await;
        let fields: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["method", "identifier", "type", "alias"]);
        assert!(!problem.to_string().contains("a@example.org"), "the stored data is not echoed");
        let read: Value = app.registration(key, "c1").await.json().await.unwrap();
        assert_eq!(read, created);
        assert_eq!(app.users().await, 1);
    }

    async fn each_validation_rule_is_a_400_naming_the_field(app) {
        let key = &app.sandbox.api_key;
        let cases: [(Value, &str); 12] = [
            (json!({"method": "NONE", "type": "INDIVIDUAL"}), "externalUserId"),
            (json!({"externalUserId": "", "type": "INDIVIDUAL"}), "externalUserId"),
            (json!({"externalUserId": "x".repeat(256), "type": "INDIVIDUAL"}), "externalUserId"),
            (json!({"externalUserId": 12, "type": "INDIVIDUAL"}), "externalUserId"),
            (json!({"externalUserId": "x", "method": "SMS", "type": "INDIVIDUAL"}), "method"),
            (json!({"externalUserId": "x", "method": "EMAIL", "type": "INDIVIDUAL"}), "identifier"),
            (json!({"externalUserId": "x", "method": "EMAIL", "identifier": "nope", "type": "INDIVIDUAL"}), "identifier"),
            (json!({"externalUserId": "x", "method": "PHONE_NUMBER", "identifier": "+52123", "type": "INDIVIDUAL"}), "identifier"),
            (json!({"externalUserId": "x", "method": "NONE", "identifier": "money@capa.fi", "type": "INDIVIDUAL"}), "identifier"),
            (json!({"externalUserId": "x", "type": "PERSON"}), "type"),
            (json!({"externalUserId": "x", "type": "INDIVIDUAL", "alias": "a\u{7}"}), "alias"),
            (json!({"externalUserId": "x", "type": "INDIVIDUAL", "alais": "typo"}), "alais"),
        ];
        for (body, field) in cases {
            let problem = assert_problem(app.register(key, &body).await, 400).await;
            let fields: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
            assert!(fields.contains(&field), "{body}: {fields:?}");
        }
        let malformed = app.client.post(app.url("/partner/users")).header("PartnerApiKey", key).header("Content-Type", "application/json").body("{").send().await.unwrap();
        assert_problem(malformed, 400).await;
        assert_eq!(app.users().await, 0, "nothing was written");
    }

    async fn only_the_partners_api_key_opens_the_route(app) {
        let body = json!({"externalUserId": "x", "type": "INDIVIDUAL"});
        let none = app.client.post(app.url("/partner/users")).json(&body).send().await.unwrap();
        assert_problem(none, 401).await;
        assert_problem(app.register("onb_sandbox_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &body).await, 401).await;
        let token = app.sandbox_token().await;
        let bearer = app.client.post(app.url("/partner/users")).bearer_auth(token).json(&body).send().await.unwrap();
        assert_problem(bearer, 401).await;
        assert_eq!(app.users().await, 0);
    }

    async fn partners_are_isolated(app) {
        let other = app.other_partner_key().await;
        let body = json!({"externalUserId": "shared-id", "method": "NONE", "type": "INDIVIDUAL"});
        let mine: Value = app.register(&app.sandbox.api_key, &body).await.json().await.unwrap();
        assert_problem(app.registration(&other, "shared-id").await, 404).await;
        let theirs = app.register(&other, &body).await;
        assert_eq!(theirs.status(), 201, "the same externalUserId is another partner's own user");
        assert_ne!(theirs.json::<Value>().await.unwrap()["userId"], mine["userId"]);
        assert_problem(app.registration(&app.sandbox.api_key, "no-such-id").await, 404).await;
    }

    async fn a_hundred_concurrent_identical_requests_make_one_user(app) {
        let body = json!({"externalUserId": "burst", "method": "EMAIL", "identifier": "burst@example.org", "type": "INDIVIDUAL"});
        let requests = (0..100).map(|_| {
            let (client, url, key, body) = (app.client.clone(), app.url("/partner/users"), app.sandbox.api_key.clone(), body.clone());
            tokio::spawn(async move {
                let response = client.post(url).header("PartnerApiKey", key).json(&body).send().await.unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap()["userId"].clone())
            })
        });
        let mut statuses = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for request in requests {
            let (status, id) = request.await.unwrap();
            statuses.push(status);
            ids.insert(id.to_string());
        }
        assert_eq!(statuses.iter().filter(|&&s| s == 201).count(), 1);
        assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 99);
        assert_eq!(ids.len(), 1, "100 identical userIds");
        assert_eq!(app.users().await, 1);
    }
}

on_both_backends! {
    async fn without_group_commit(app, |s| s.db.group_commit = false) {
        let key = &app.sandbox.api_key;
        let body = json!({"externalUserId": "direct", "method": "PHONE_NUMBER", "identifier": "+5215521206703", "type": "INDIVIDUAL"});
        let created = app.register(key, &body).await;
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap();
        assert_eq!(created["identifier"], "+525521206703", "legacy Mexican mobile form stored modern");
        let again = app.register(key, &body).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.json::<Value>().await.unwrap(), created);
        let changed = json!({"externalUserId": "direct", "method": "NONE", "type": "INDIVIDUAL"});
        assert_problem(app.register(key, &changed).await, 409).await;
        assert_eq!(app.users().await, 1);
    }
}
