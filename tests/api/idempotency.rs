//! `Idempotency-Key` on POST routes, over HTTP and at the store, on both backends.

use crate::helpers::{TestApp, assert_problem};
use crate::on_both_backends;

impl TestApp {
    pub async fn post_user_with_key(&self, token: &str, key: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.url("/User"))
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", key)
            .body(body.to_owned())
            .send()
            .await
            .expect("request")
    }
}

on_both_backends! {
    async fn a_repeat_returns_the_first_answer(app) {
        let token = app.sandbox_token().await;
        let body = format!(r#"{{"merchantId": {}, "email": "client.name@example.org"}}"#, app.sandbox.partner_id);
        let first = app.post_user_with_key(&token, "retry-1", &body).await;
        assert_eq!(first.status(), 201);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let location = first.headers()["location"].clone();
        let first_body = first.text().await.unwrap();

        // Same request, spelled differently (spacing, key order): still a repeat.
        let respelled = format!(r#"{{ "email":"client.name@example.org",  "merchantId":{} }}"#, app.sandbox.partner_id);
        let again = app.post_user_with_key(&token, "\"retry-1\"", &respelled).await;
        assert_eq!(again.status(), 201);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.headers()["location"], location);
        assert_eq!(again.headers()["content-type"], "application/json; charset=utf-8");
        assert_eq!(again.text().await.unwrap(), first_body);
        assert_eq!(app.users().await, 1);
    }

    async fn the_same_key_with_another_body_is_422(app) {
        let token = app.sandbox_token().await;
        let pid = app.sandbox.partner_id;
        app.post_user_with_key(&token, "k", &format!(r#"{{"merchantId": {pid}, "email": "a@example.org"}}"#)).await;
        let response = app.post_user_with_key(&token, "k", &format!(r#"{{"merchantId": {pid}, "email": "b@example.org"}}"#)).await;
        let problem = assert_problem(response, 422).await;
        assert_eq!(problem["type"], "urn:onboard:problem:idempotency-key-reused");
        assert_eq!(app.users().await, 1);
    }

    async fn keys_are_scoped_per_partner(app) {
        let token = app.sandbox_token().await;
        let (other_id, other_token) = app.other_partner_token().await;
        let mine = app.post_user_with_key(&token, "shared", &format!(r#"{{"merchantId": {}, "email": null}}"#, app.sandbox.partner_id)).await;
        let theirs = app.post_user_with_key(&other_token, "shared", &format!(r#"{{"merchantId": {other_id}, "email": null}}"#)).await;
        assert_eq!(mine.status(), 201);
        assert_eq!(theirs.status(), 201);
        assert!(theirs.headers().get("idempotent-replayed").is_none());
    }

    async fn final_errors_are_replayed_but_auth_failures_are_not_stored(app) {
        let token = app.sandbox_token().await;
        let body = format!(r#"{{"merchantId": {}, "email": "nope"}}"#, app.sandbox.partner_id);
        let first = app.post_user_with_key(&token, "bad-email", &body).await;
        assert_eq!(first.status(), 400);
        let first_text = first.text().await.unwrap();
        let again = app.post_user_with_key(&token, "bad-email", &body).await;
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.text().await.unwrap(), first_text, "the stored answer, trace id included");

        // A 403 is not final (the partner may fix its credentials); the key stays usable.
        let (other_id, _) = app.other_partner_token().await;
        let forbidden = format!(r#"{{"merchantId": {other_id}, "email": null}}"#);
        assert_eq!(app.post_user_with_key(&token, "k403", &forbidden).await.status(), 403);
        let ok = format!(r#"{{"merchantId": {}, "email": null}}"#, app.sandbox.partner_id);
        assert_eq!(app.post_user_with_key(&token, "k403", &ok).await.status(), 201);
    }

    async fn fifty_concurrent_identical_requests_create_one_user(app) {
        let token = app.sandbox_token().await;
        let body = format!(r#"{{"merchantId": {}, "email": "burst@example.org"}}"#, app.sandbox.partner_id);
        let requests = (0..50).map(|_| {
            let (client, url, token, body) = (app.client.clone(), app.url("/User"), token.clone(), body.clone());
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .header("Content-Type", "application/json")
                    .header("Idempotency-Key", "burst")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (status, response.text().await.unwrap())
            })
        });
        let mut created_bodies = std::collections::HashSet::new();
        for request in requests {
            let (status, text) = request.await.unwrap();
            match status {
                201 => {
                    created_bodies.insert(text);
                }
                409 => assert!(text.contains("idempotency-key-in-use"), "{text}"),
                other => panic!("unexpected {other}: {text}"),
            }
        }
        assert_eq!(created_bodies.len(), 1, "every 201 carries the same id");
        assert_eq!(app.users().await, 1);
    }

    async fn malformed_keys_are_rejected(app) {
        let token = app.sandbox_token().await;
        let body = format!(r#"{{"merchantId": {}, "email": null}}"#, app.sandbox.partner_id);
        // Seed 001 answers its 400s as ASP.NET's ValidationProblemDetails, this one too.
        let response = app.post_user_with_key(&token, "has space", &body).await;
        assert_eq!(response.status(), 400);
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["errors"]["Idempotency-Key"][0], "1 to 255 visible ASCII characters, optionally in double quotes");
        assert_eq!(problem["title"], "One or more validation errors occurred.");
        assert_eq!(app.users().await, 0);
        // Every other surface in its problem+json shape.
        let response = app
            .client
            .post(app.url("/partner/users"))
            .header("PartnerApiKey", &app.sandbox.api_key)
            .header("Idempotency-Key", "has space")
            .json(&serde_json::json!({"externalUserId": "x", "type": "INDIVIDUAL"}))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    }
}

on_both_backends! {
    async fn claims_on_the_store(store: Store) {
        use onboard::auth::credentials::{NewApiKey, NewClient};
        use onboard::domain::{Environment, PartnerName};
        use onboard::store::{Claim, ClaimRequest, IdempotencyScope, StoredResponse};

        let env = Environment::Sandbox;
        let partner = store
            .create_partner(
                &PartnerName::parse("P").unwrap(),
                env,
                &NewApiKey::generate(env),
                &NewClient::generate(),
                0,
            )
            .await
            .unwrap();
        let scope = IdempotencyScope { partner: partner.id, key: "k".into() };
        let (fp, other) = ([1u8; 32], [2u8; 32]);
        let claim = |fp: [u8; 32], now: i64| {
            let (store, scope) = (store.clone(), scope.clone());
            async move {
                let request = ClaimRequest { scope, fingerprint: fp, now, lease_ms: 1_000, ttl_ms: 10_000, node: None };
                store.claim_idempotency_key(&request).await.unwrap()
            }
        };
        assert_eq!(claim(fp, 0).await, Claim::Acquired);
        assert_eq!(claim(fp, 500).await, Claim::InFlight);
        assert_eq!(claim(other, 500).await, Claim::Mismatch);
        // The lease runs out: the next request takes the key over, exactly once.
        assert_eq!(claim(fp, 1_500).await, Claim::Acquired);
        assert_eq!(claim(fp, 1_600).await, Claim::InFlight);
        let stored =
            StoredResponse { status: 201, headers: vec![("location".into(), "/User/1".into())], body: b"{}".to_vec() };
        store.complete_idempotency_key(&scope, &stored).await.unwrap();
        assert_eq!(claim(fp, 2_000).await, Claim::Replay(stored));
        // Past its retention the key is new again.
        assert_eq!(claim(other, 10_001).await, Claim::Acquired);
        store.release_idempotency_key(&scope).await.unwrap();
        assert_eq!(claim(fp, 10_002).await, Claim::Acquired);
        assert_eq!(store.purge_expired_idempotency_keys(30_000).await.unwrap(), 1);
    }
}

on_both_backends! {
    async fn keys_work_on_other_post_routes_too(app) {
        let body = serde_json::json!({"externalUserId": "idem-000", "method": "NONE", "type": "INDIVIDUAL"});
        let send = || {
            app.client
                .post(app.url("/partner/users"))
                .header("PartnerApiKey", &app.sandbox.api_key)
                .header("Idempotency-Key", "reg-1")
                .json(&body)
                .send()
        };
        let first = send().await.unwrap();
        assert_eq!(first.status(), 201);
        let first_body = first.text().await.unwrap();
        // Without the key a repeat is seed 000's own replay (200); with it, the stored 201.
        let again = send().await.unwrap();
        assert_eq!(again.status(), 201);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.text().await.unwrap(), first_body);
        assert_eq!(app.users().await, 1);
    }

    async fn a_released_nodes_claims_are_free_at_once(store: Store) {
        use onboard::auth::credentials::{NewApiKey, NewClient};
        use onboard::domain::{Environment, PartnerName};
        use onboard::store::nodes::{NodeRow, Released};
        use onboard::store::{Claim, ClaimRequest, IdempotencyScope, NewJob};

        let env = Environment::Sandbox;
        let partner = store
            .create_partner(&PartnerName::parse("P").unwrap(), env, &NewApiKey::generate(env), &NewClient::generate(), 0)
            .await
            .unwrap();
        let node = |id: &str, heartbeat_at: i64| NodeRow { id: id.into(), host: "h".into(), pid: 1, started_at: 0, heartbeat_at };
        store.register_node(&node("node-a", 1_000)).await.unwrap();
        store.register_node(&node("node-b", 50_000)).await.unwrap();
        let now = 60_000;
        // Node A holds a job lease and an in-flight key, each for ten minutes.
        store.enqueue_job(&NewJob::new("test.held", serde_json::json!({}), now), now).await.unwrap();
        assert_eq!(store.claim_jobs("test.held", "node-a", 10, 600_000, now).await.unwrap().len(), 1);
        let scope = IdempotencyScope { partner: partner.id, key: "k".into() };
        let claim = |node: &str, now: i64| {
            let request = ClaimRequest { scope: scope.clone(), fingerprint: [7; 32], now, lease_ms: 600_000, ttl_ms: 86_400_000, node: Some(node.into()) };
            let store = store.clone();
            async move { store.claim_idempotency_key(&request).await.unwrap() }
        };
        assert_eq!(claim("node-a", now).await, Claim::Acquired);
        assert!(store.claim_jobs("test.held", "node-b", 10, 600_000, now + 1).await.unwrap().is_empty());
        assert_eq!(claim("node-b", now + 1).await, Claim::InFlight);

        // A node that sent a heartbeat since the cut-off is not released; a silent one is.
        assert_eq!(store.release_node("node-b", Some(40_000), false, now + 2).await.unwrap(), None);
        let released = store.release_node("node-a", Some(40_000), false, now + 2).await.unwrap();
        assert_eq!(released, Some(Released { jobs: 1, idempotency_keys: 1 }));
        assert_eq!(store.release_node("node-a", Some(40_000), false, now + 3).await.unwrap(), None, "once");
        assert!(!store.node_heartbeat("node-a", now + 3).await.unwrap(), "a released node learns it");
        assert!(store.node_heartbeat("node-b", now + 3).await.unwrap());

        // Node B takes both over at once, not ten minutes later.
        let taken = store.claim_jobs("test.held", "node-b", 10, 600_000, now + 4).await.unwrap();
        assert_eq!((taken.len(), taken[0].attempts), (1, 2));
        assert_eq!(claim("node-b", now + 4).await, Claim::Acquired);
    }
}
