use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::assert_problem;
use crate::on_both_backends;

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

on_both_backends! {
    async fn api_key_identifies_the_partner(app) {
        let response = app.get_partner_with_key(&app.sandbox.api_key).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["partnerId"], app.sandbox.partner_id);
        assert_eq!(body["environment"], "sandbox");
    }

    async fn bad_or_missing_api_keys_are_401_problems(app) {
        let mut tampered = app.sandbox.api_key.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        for key in [tampered.as_str(), "not-a-key", "onb_sandbox_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            let response = app.get_partner_with_key(key).await;
            assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("PartnerApiKey"));
            assert_problem(response, 401).await;
        }
        let missing = app.get("/partner").await;
        assert_problem(missing, 401).await;
    }

    async fn bearer_token_identifies_the_partner(app) {
        let token = app.sandbox_token().await;
        let response = app.get_partner_with_bearer(&token).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap()["partnerId"], app.sandbox.partner_id);
    }

    async fn expired_token_is_rejected(app) {
        let partner = app.store().list_partners().await.unwrap().remove(0);
        let two_hours_ago = onboard::domain::now_ms() / 1000 - 7200;
        let token = app.state.keys.issue_partner_token(&partner, "cli_x", two_hours_ago, Duration::from_secs(3600)).unwrap();
        let response = app.get_partner_with_bearer(&token).await;
        assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="onboard", error="invalid_token""#);
        assert_problem(response, 401).await;
    }

    async fn forged_tokens_are_rejected(app) {
        let genuine = app.sandbox_token().await;
        let claims: Value = {
            let payload = genuine.split('.').nth(1).unwrap();
            use base64::Engine;
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
        };
        // Signed by an attacker's own Ed25519 key under the genuine kid.
        let attacker = onboard::auth::tokens::generate_signing_key(0);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid_of(&genuine));
        let forged = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&attacker.private_key)).unwrap();
        // HS256 "signed" with the public key: the classic algorithm-confusion attack.
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(kid_of(&genuine));
        let confused = jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(b"public")).unwrap();
        // Unsigned.
        let parts: Vec<&str> = genuine.split('.').collect();
        let unsigned = format!("{}.{}.", parts[0], parts[1]);
        // A partner id changed in an otherwise genuine token.
        let mut escalated = claims.clone();
        escalated["partner_id"] = json!(app.sandbox.partner_id + 1);
        let tampered_payload = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&escalated).unwrap())
        };
        let tampered = format!("{}.{}.{}", parts[0], tampered_payload, parts[2]);

        // A kid the service never published, and `alg: none` spelled out.
        let mut unknown = Header::new(Algorithm::EdDSA);
        unknown.kid = Some("not-a-published-kid".into());
        let unknown_kid = jsonwebtoken::encode(&unknown, &claims, &EncodingKey::from_ed_der(&attacker.private_key)).unwrap();
        let alg_none = {
            use base64::Engine;
            let header = json!({"alg": "none", "typ": "at+jwt", "kid": kid_of(&genuine)});
            let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
            format!("{header}.{}.", parts[1])
        };
        for token in [forged, confused, unsigned, tampered, unknown_kid, alg_none, "garbage".to_owned()] {
            let response = app.get_partner_with_bearer(&token).await;
            assert_problem(response, 401).await;
        }
        // A non-Bearer scheme is refused too.
        let basic = app.client.get(app.url("/partner")).header("Authorization", "Basic Zm9vOmJhcg==").send().await.unwrap();
        assert_problem(basic, 401).await;
    }

    async fn rolled_api_key_keeps_the_old_one_for_the_grace_period(app) {
        let response = app.roll_api_key(&app.sandbox.api_key, &json!({"expireCurrentKeysInSeconds": 3600})).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        let new_key = body["apiKey"].as_str().unwrap().to_owned();
        assert_eq!(app.get_partner_with_key(&new_key).await.status(), 200);
        assert_eq!(app.get_partner_with_key(&app.sandbox.api_key).await.status(), 200);

        // Rolling again with no grace revokes every other key at once.
        let response = app.roll_api_key(&new_key, &json!({"expireCurrentKeysInSeconds": 0})).await;
        assert_eq!(response.status(), 201);
        let newest = response.json::<Value>().await.unwrap()["apiKey"].as_str().unwrap().to_owned();
        assert_eq!(app.get_partner_with_key(&app.sandbox.api_key).await.status(), 401);
        assert_eq!(app.get_partner_with_key(&new_key).await.status(), 401);
        assert_eq!(app.get_partner_with_key(&newest).await.status(), 200);
    }

    async fn invalid_roll_requests_change_nothing(app) {
        for body in [json!({"expireCurrentKeysInSeconds": -1}), json!({"expireCurrentKeysInSeconds": 99_999_999})] {
            let problem = assert_problem(app.roll_api_key(&app.sandbox.api_key, &body).await, 400).await;
            assert_eq!(problem["errors"][0]["field"], "expireCurrentKeysInSeconds");
        }
        let problem = assert_problem(app.roll_api_key(&app.sandbox.api_key, &json!({"expireCurrentKeysInSeconds": "soon"})).await, 400).await;
        assert!(problem["detail"].as_str().unwrap().contains("expireCurrentKeysInSeconds"), "{problem}");
        assert_problem(app.roll_api_key(&app.sandbox.api_key, &json!({"graceSeconds": 5})).await, 400).await;
        // The original key still works: nothing was rotated.
        assert_eq!(app.get_partner_with_key(&app.sandbox.api_key).await.status(), 200);
    }
}
