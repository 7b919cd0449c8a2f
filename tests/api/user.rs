//! Seed 001: `POST /User` exactly as documented, on both backends.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_trace_id};
use crate::on_both_backends;

impl TestApp {
    pub async fn post_user(&self, token: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.url("/User"))
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request")
    }

    pub async fn users(&self) -> i64 {
        let partner = onboard::domain::PartnerId::new(self.sandbox.partner_id).unwrap();
        self.store().count_users(partner).await.unwrap()
    }

    /// A second partner with its own token.
    pub async fn other_partner_token(&self) -> (i64, String) {
        use onboard::auth::credentials::{NewApiKey, NewClient};
        use secrecy::ExposeSecret;
        let client = NewClient::generate();
        let name = onboard::domain::PartnerName::parse("Other").unwrap();
        let env = onboard::domain::Environment::Sandbox;
        let partner = self.store().create_partner(&name, env, &NewApiKey::generate(env), &client, 0).await.unwrap();
        let response = self
            .post_token(
                &[("grant_type", "client_credentials")],
                Some((&client.client_id, client.secret.expose_secret())),
            )
            .await;
        let token = response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
        (partner.id.get(), token)
    }
}

/// The body with its trace id replaced by `<trace>`, after checking the trace id's form.
async fn body_without_trace(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_trace_id(&value["traceId"]);
    text.replace(value["traceId"].as_str().unwrap(), "<trace>")
}

const SEED_TYPE: &str = "https://tools.ietf.org/html/rfc7231#section-6.5.1";

on_both_backends! {
    async fn seed_request_creates_a_user(app) {
        let token = app.sandbox_token().await;
        let body = format!(r#"{{"merchantId": {}, "email": "client.name@example.org"}}"#, app.sandbox.partner_id);
        let response = app.post_user(&token, &body).await;
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let text = response.text().await.unwrap();
        let id = serde_json::from_str::<Value>(&text).unwrap()["id"].as_i64().unwrap();
        assert_eq!(text, format!(r#"{{"id":{id}}}"#));
        assert_eq!(location, format!("/User/{id}"));
        assert!(id > 0 && id <= i64::from(i32::MAX));

        let stored: Value = app.client.get(app.url(&location)).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        assert_eq!(stored["id"], id);
        assert_eq!(stored["email"], "client.name@example.org");
        assert_eq!(stored["merchantId"], app.sandbox.partner_id);
        assert!(stored["userId"].as_str().unwrap().starts_with("usr:"));
    }

    async fn seed_validation_examples_reproduce_byte_for_byte(app) {
        let token = app.sandbox_token().await;
        let pid = app.sandbox.partner_id;
        let response = app.post_user(&token, &format!(r#"{{"merchantId": {pid}, "email": "not-an-email"}}"#)).await;
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()["content-type"], "application/problem+json; charset=utf-8");
        assert_eq!(
            body_without_trace(response).await,
            format!(r#"{{"errors":{{"Email":["Invalid email address"]}},"type":"{SEED_TYPE}","title":"One or more validation errors occurred.","status":400,"traceId":"<trace>"}}"#)
        );
        let response = app.post_user(&token, &format!(r#"{{"merchantId": {pid}, "email": ""}}"#)).await;
        assert_eq!(response.status(), 400);
        assert_eq!(
            body_without_trace(response).await,
            format!(r#"{{"errors":{{"Email":["The Email field is required.","Email address is required"]}},"type":"{SEED_TYPE}","title":"One or more validation errors occurred.","status":400,"traceId":"<trace>"}}"#)
        );
        assert_eq!(app.users().await, 0, "invalid requests write nothing");
    }

    async fn null_email_and_additional_data_are_accepted_and_kept(app) {
        let token = app.sandbox_token().await;
        let additional = r#"{"type": "migration", "data": {"requestId": "r-1", "tier": 2.50}}"#;
        let body = format!(r#"{{"merchantId": {}, "email": null, "additionalData": {additional}}}"#, app.sandbox.partner_id);
        let response = app.post_user(&token, &body).await;
        assert_eq!(response.status(), 201);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let stored = app.client.get(app.url(&location)).bearer_auth(&token).send().await.unwrap().text().await.unwrap();
        assert!(stored.contains(r#""additionalData":{"type": "migration", "data": {"requestId": "r-1", "tier": 2.50}}"#), "{stored}");
        assert!(stored.contains(r#""email":null"#));
    }

    async fn each_call_without_a_key_creates_a_new_record(app) {
        let token = app.sandbox_token().await;
        let body = format!(r#"{{"merchantId": {}, "email": "client.name@example.org"}}"#, app.sandbox.partner_id);
        let first: Value = app.post_user(&token, &body).await.json().await.unwrap();
        let second: Value = app.post_user(&token, &body).await.json().await.unwrap();
        assert_ne!(first["id"], second["id"]);
        assert_eq!(app.users().await, 2);
    }

    async fn wrong_types_missing_keys_and_bad_json_are_reported_like_aspnet(app) {
        let token = app.sandbox_token().await;
        let cases: [(&str, &[&str]); 7] = [
            (r#"{"merchantId":"abc","email":null}"#, &["$.merchantId"]),
            (r#"{"merchantId":1,"email":null,"additionalData":[]}"#, &["$.additionalData"]),
            (r#"{"merchantId":1,"email":null,"additionalData":{"type":5,"data":"x"}}"#, &["$.additionalData.type", "$.additionalData.data"]),
            (r#"{"email":"a@example.org"}"#, &["$"]),
            (r#"{"merchantId":"x","email":"bad"}"#, &["$.merchantId", "Email"]),
            (r#"{"merchantId": 1, "email": "#, &["$"]),
            ("", &[""]),
        ];
        for (body, keys) in cases {
            let response = app.post_user(&token, body).await;
            assert_eq!(response.status(), 400, "{body}");
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["type"], SEED_TYPE);
            let errors = problem["errors"].as_object().unwrap();
            let got: Vec<&str> = errors.keys().map(String::as_str).collect();
            for key in keys {
                assert!(got.contains(key), "{body}: expected {key} in {got:?}");
            }
        }
        let problem: Value = app.post_user(&token, r#"{"merchantId":"abc","email":null}"#).await.json().await.unwrap();
        assert_eq!(
            problem["errors"]["$.merchantId"][0],
            "The JSON value could not be converted to System.Int32. Path: $.merchantId | LineNumber: 0 | BytePositionInLine: 19."
        );
        assert_eq!(app.users().await, 0);
    }

    // ASP.NET Core's web defaults (shared/PROTOCOLS.md): property names bind case-insensitively
    // (the last spelling in the document wins), Int32 reads from a numeric string, and routes
    // match case-insensitively with an optional trailing slash. Errors name the property as sent.
    async fn aspnet_binding_and_routing_defaults(app) {
        let token = app.sandbox_token().await;
        let pid = app.sandbox.partner_id;
        let post = |path: &'static str, body: String| {
            let request = app.client.post(app.url(path)).bearer_auth(&token).header("Content-Type", "application/json").body(body);
            async move { request.send().await.unwrap() }
        };
        let created = post("/User", format!(r#"{{"MerchantId": {pid}, "EMAIL": "pascal@example.org", "AdditionalData": {{"Type": "import"}}}}"#)).await;
        assert_eq!(created.status(), 201);
        let location = created.headers()["location"].to_str().unwrap().to_owned();
        let stored: Value = app.client.get(app.url(&location)).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        assert_eq!((stored["email"].as_str(), stored["merchantId"].as_i64()), (Some("pascal@example.org"), Some(pid)));
        assert_eq!(stored["additionalData"]["Type"], "import");

        // A number as a JSON string; the routes in other spellings.
        for path in ["/user", "/USER", "/User/", "/uSeR/"] {
            let response = post(path, format!(r#"{{"merchantId": "{pid}", "email": "string.{}@example.org"}}"#, path.len())).await;
            assert_eq!(response.status(), 201, "{path}");
            let id = response.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
            for read in [format!("/user/{id}"), format!("/USER/{id}/")] {
                let got = app.client.get(app.url(&read)).bearer_auth(&token).send().await.unwrap();
                assert_eq!(got.status(), 200, "{read}");
                assert_eq!(got.json::<Value>().await.unwrap()["id"], id);
            }
        }
        assert_eq!(app.users().await, 5);

        // The last of several spellings wins: here an invalid one, reported by the name it was sent under.
        let body = format!(r#"{{"merchantId": {pid}, "email": null, "MERCHANTID": "abc"}}"#);
        let after_value = body.find(r#""abc""#).unwrap() + 5;
        let problem: Value = post("/user", body).await.json().await.unwrap();
        assert_eq!(
            problem["errors"]["$.MERCHANTID"][0].as_str().unwrap(),
            format!("The JSON value could not be converted to System.Int32. Path: $.MERCHANTID | LineNumber: 0 | BytePositionInLine: {after_value}.")
        );
        // Strings that are not exactly an Int32 stay conversion errors; range errors keep the C# name.
        for bad in [r#"" 1""#, r#""1.0""#, r#""2147483648""#, r#""""#, "1.5", "true"] {
            let problem: Value = post("/User", format!(r#"{{"merchantId": {bad}, "email": null}}"#)).await.json().await.unwrap();
            assert!(problem["errors"]["$.merchantId"].is_array(), "{bad}: {problem}");
        }
        let problem: Value = post("/User", r#"{"merchantId": "0", "Email": null}"#.into()).await.json().await.unwrap();
        assert_eq!(problem["errors"]["MerchantId"][0], "The field MerchantId must be between 1 and 2147483647.");
        let problem: Value = post("/User", r#"{"merchantid": 1}"#.into()).await.json().await.unwrap();
        assert!(problem["errors"]["$"][0].as_str().unwrap().ends_with("missing required properties including: 'email'."), "{problem}");
        assert_eq!(app.users().await, 5, "invalid requests write nothing");

        // Other surfaces keep their exact spelling and strict names.
        let other = app.client.get(app.url("/PARTNER")).header("PartnerApiKey", &app.sandbox.api_key).send().await.unwrap();
        assert_eq!(other.status(), 404);
    }

    async fn authentication_failures_are_401_with_a_bearer_challenge(app) {
        let body = format!(r#"{{"merchantId": {}, "email": null}}"#, app.sandbox.partner_id);
        let missing = app.client.post(app.url("/User")).header("Content-Type", "application/json").body(body.clone()).send().await.unwrap();
        assert_eq!(missing.status(), 401);
        assert!(missing.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        let problem: Value = missing.json().await.unwrap();
        assert_eq!(problem["type"], "https://tools.ietf.org/html/rfc7235#section-3.1");
        assert_trace_id(&problem["traceId"]);

        let partner = app.store().list_partners().await.unwrap().remove(0);
        let expired = app
            .state
            .keys
            .issue_partner_token(&partner, "cli_x", onboard::domain::now_ms() / 1000 - 7200, std::time::Duration::from_secs(60))
            .unwrap();
        for token in [expired.as_str(), "not.a.jwt"] {
            let response = app.post_user(token, &body).await;
            assert_eq!(response.status(), 401);
            assert!(response.headers()["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_token""#));
        }
        // An API key is not what this surface accepts.
        let with_key = app
            .client
            .post(app.url("/User"))
            .header("PartnerApiKey", &app.sandbox.api_key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(with_key.status(), 401);
        assert_eq!(app.users().await, 0);
    }

    async fn another_merchants_id_is_forbidden_and_users_are_private(app) {
        let token = app.sandbox_token().await;
        let (other_id, other_token) = app.other_partner_token().await;
        let response = app.post_user(&token, &format!(r#"{{"merchantId": {other_id}, "email": null}}"#)).await;
        assert_eq!(response.status(), 403);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "https://tools.ietf.org/html/rfc7231#section-6.5.3");

        let created = app.post_user(&token, &format!(r#"{{"merchantId": {}, "email": null}}"#, app.sandbox.partner_id)).await;
        let location = created.headers()["location"].to_str().unwrap().to_owned();
        let as_other = app.client.get(app.url(&location)).bearer_auth(&other_token).send().await.unwrap();
        assert_eq!(as_other.status(), 404);
        for path in ["/User/999999", "/User/abc", "/User/0", "/User/99999999999"] {
            assert_eq!(app.client.get(app.url(path)).bearer_auth(&token).send().await.unwrap().status(), 404, "{path}");
        }
    }

    async fn content_type_and_size_limits(app) {
        let token = app.sandbox_token().await;
        let body = format!(r#"{{"merchantId": {}, "email": null}}"#, app.sandbox.partner_id);
        let text = app.client.post(app.url("/User")).bearer_auth(&token).header("Content-Type", "text/plain").body(body.clone()).send().await.unwrap();
        assert_eq!(text.status(), 415);
        let vendor_json = app
            .client
            .post(app.url("/User"))
            .bearer_auth(&token)
            .header("Content-Type", "application/vnd.api+json; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(vendor_json.status(), 201);
        let big = json!({"merchantId": app.sandbox.partner_id, "email": null, "additionalData": {"data": {"pad": "x".repeat(2 << 20)}}});
        let response = app.client.post(app.url("/User")).bearer_auth(&token).json(&big).send().await.unwrap();
        assert_eq!(response.status(), 413);
        assert_eq!(app.users().await, 1);
    }

    async fn a_closed_database_is_a_503_problem(app) {
        let token = app.sandbox_token().await;
        app.store().close().await;
        let response = app.post_user(&token, &format!(r#"{{"merchantId": {}, "email": null}}"#, app.sandbox.partner_id)).await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        assert_trace_id(&response.json::<Value>().await.unwrap()["traceId"]);
    }
}

on_both_backends! {
    async fn a_burst_of_creates_gets_distinct_committed_ids(app) {
        let token = app.sandbox_token().await;
        let requests = (0..200).map(|i| {
            let (client, url, token) = (app.client.clone(), app.url("/User"), token.clone());
            let body = format!(r#"{{"merchantId": {}, "email": "u{i}@example.org", "additionalData": {{"data": {{"i": {i}}}}}}}"#, app.sandbox.partner_id);
            tokio::spawn(async move {
                let response = client.post(url).bearer_auth(token).header("Content-Type", "application/json").body(body).send().await.unwrap();
                assert_eq!(response.status(), 201);
                response.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
            })
        });
        let mut ids = std::collections::HashSet::new();
        for request in requests {
            ids.insert(request.await.unwrap());
        }
        assert_eq!(ids.len(), 200);
        assert_eq!(app.users().await, 200);
        // Each id is the row its request wrote (batches match rows by public id, not by order).
        let id = *ids.iter().next().unwrap();
        let stored: Value = app.client.get(app.url(&format!("/User/{id}"))).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        let i = stored["additionalData"]["data"]["i"].as_i64().unwrap();
        assert_eq!(stored["email"], format!("u{i}@example.org"));
    }
}

on_both_backends! {
    async fn without_group_commit_or_credential_cache(app, |s| {
        s.db.group_commit = false;
        s.auth.credential_cache = false;
    }) {
        let token = app.sandbox_token().await;
        let body = format!(r#"{{"merchantId": {}, "email": "direct@example.org"}}"#, app.sandbox.partner_id);
        let first = app.post_user_with_key(&token, "direct", &body).await;
        assert_eq!(first.status(), 201);
        let first = first.text().await.unwrap();
        let again = app.post_user_with_key(&token, "direct", &body).await;
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.text().await.unwrap(), first);
        assert_eq!(app.post_user(&token, &body).await.status(), 201);
        assert_eq!(app.users().await, 2);
    }
}
