use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::on_both_backends;

on_both_backends! {
    async fn client_credentials_token_verifies_against_the_jwks(app) {
        let response = app
            .post_token(&[("grant_type", "client_credentials")], Some((&app.sandbox.client_id, &app.sandbox.client_secret)))
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        let token = body["access_token"].as_str().unwrap();

        let jwks: JwkSet = app.get("/.well-known/jwks.json").await.json().await.unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("the token's kid is published");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&["onboard"]);
        let claims = jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap().claims;
        assert_eq!(claims["partner_id"], app.sandbox.partner_id);
        assert_eq!(claims["sub"], format!("partner:{}", app.sandbox.partner_id));
        assert_eq!(claims["env"], "sandbox");
    }

    async fn credentials_may_be_sent_in_the_form(app) {
        let response = app
            .post_token(
                &[("grant_type", "client_credentials"), ("client_id", &app.sandbox.client_id), ("client_secret", &app.sandbox.client_secret)],
                None,
            )
            .await;
        assert_eq!(response.status(), 200);
    }

    async fn wrong_secret_is_invalid_client(app) {
        let response = app.post_token(&[("grant_type", "client_credentials")], Some((&app.sandbox.client_id, "cs_wrong"))).await;
        assert_eq!(response.status(), 401);
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");

        let unknown = app.post_token(&[("grant_type", "client_credentials")], Some(("cli_nobody", "x"))).await;
        assert_eq!(unknown.status(), 401);
        let none = app.post_token(&[("grant_type", "client_credentials")], None).await;
        assert_eq!(none.status(), 401);
    }

    async fn grant_type_errors_follow_rfc_6749(app) {
        let creds = Some((app.sandbox.client_id.as_str(), app.sandbox.client_secret.as_str()));
        let response = app.post_token(&[("grant_type", "password")], creds).await;
        assert_eq!(response.status(), 400);
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");

        let response = app.post_token(&[], creds).await;
        assert_eq!(response.status(), 400);
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_request");

        // Two client authentication methods at once are refused.
        let response = app
            .post_token(&[("grant_type", "client_credentials"), ("client_secret", &app.sandbox.client_secret)], creds)
            .await;
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_request");

        // JSON is not the token endpoint's media type.
        let response = app
            .client
            .post(app.url("/oauth/token"))
            .json(&serde_json::json!({"grant_type": "client_credentials"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_request");
    }

    async fn rotated_signing_key_keeps_old_tokens_valid(app) {
        let old = app.sandbox_token().await;
        onboard::core::staff::rotate_signing_key(app.store(), &onboard::kek::Kek::development(), std::time::Duration::from_secs(3600), "test", onboard::domain::now_ms()).await.unwrap();
        app.state.keys.reload(onboard::domain::now_ms()).await.unwrap();
        let new = app.sandbox_token().await;
        let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
        assert_ne!(kid(&old), kid(&new));
        assert_eq!(app.get_partner_with_bearer(&old).await.status(), 200);
        assert_eq!(app.get_partner_with_bearer(&new).await.status(), 200);
        let jwks: JwkSet = app.get("/.well-known/jwks.json").await.json().await.unwrap();
        assert_eq!(jwks.keys.len(), 2);
    }
}
