//! The tenant matrix, generated from `/openapi.json`: every route that names a resource in its
//! path, called with the first partner's ids under every other kind of credential — a second
//! partner's API key and access token, its end user's access and refresh tokens, staff tokens of
//! each role (outside `/admin/`), and none — answers 401, 403 or 404. Never a 2xx, never an
//! answer that tells anything about the first partner's data. A new route joins the matrix by
//! being in the document.

use onboard::auth::credentials::{NewApiKey, NewClient};
use onboard::auth::staff::StaffRole;
use onboard::domain::{Environment, PartnerName, now_ms};
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use crate::helpers::TestApp;
use crate::on_both_backends;

/// The first partner's resources, by the path parameter that names them.
async fn first_partners_ids(app: &TestApp) -> Map<String, Value> {
    let key = &app.sandbox.api_key;
    let post = |path: &str, body: Value| app.client.post(app.url(path)).header("PartnerApiKey", key).json(&body).send();
    let registered: Value = post("/partner/users", json!({"externalUserId": "tenant-a", "type": "INDIVIDUAL"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let prospect: Value = post(
        "/register-user-v2",
        json!({
            "firstName": "Ana", "lastName": "Hernández", "dateOfBirth": "1990-05-17", "email": "ana@correo.mx",
            "phoneNumber": "+5215521206703", "country": "MX", "state": "MX-ROO"
        }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = app.sandbox_token().await;
    let body = json!({"merchantId": app.sandbox.partner_id, "email": null});
    let created: Value =
        app.client.post(app.url("/User")).bearer_auth(&token).json(&body).send().await.unwrap().json().await.unwrap();
    let endpoint: Value =
        post("/partner/webhooks", json!({"url": "https://partner.example/hooks"})).await.unwrap().json().await.unwrap();
    let events: Value = app
        .client
        .get(app.url("/partner/webhooks/events"))
        .header("PartnerApiKey", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids = json!({
        "externalUserId": registered["externalUserId"],
        "userId": prospect["userId"],
        "id": created["id"],
        "endpointId": endpoint["id"],
        "eventId": events["data"][0]["id"],
        "partnerId": app.sandbox.partner_id,
        "consent": "privacy",
        // Seed 003's resources belong to an end user: any id is another's to the callers below.
        "accountId": "acc:0193a1b2-0c4d-7e6f-8a9b-0c1d2e3f4a5b",
        "subscriptionId": "sub:0193a1b2-0c4d-7e6f-8a9b-0c1d2e3f4a5b",
        "invoiceId": "inv:0193a1b2-0c4d-7e6f-8a9b-0c1d2e3f4a5b",
        "planId": "plan:0193a1b2-0c4d-7e6f-8a9b-0c1d2e3f4a5b",
    });
    let ids = ids.as_object().unwrap().clone();
    for (name, value) in &ids {
        assert!(!value.is_null(), "the first partner's {name} was not created");
    }
    ids
}

/// Every other kind of credential, as `(what, header name, header value)`.
async fn other_credentials(app: &TestApp) -> Vec<(String, &'static str, String)> {
    let env = Environment::Sandbox;
    let (key, client) = (NewApiKey::generate(env), NewClient::generate());
    let name = PartnerName::parse("Second").unwrap();
    let second = app.store().create_partner(&name, env, &key, &client, now_ms()).await.unwrap();
    let secret = client.secret.expose_secret().to_owned();
    let token: Value = app
        .post_token(&[("grant_type", "client_credentials")], Some((&client.client_id, &secret)))
        .await
        .json()
        .await
        .unwrap();
    let signup =
        |body: Value| app.client.post(app.url("/users")).header("partnerId", second.id.to_string()).json(&body).send();
    let body = json!({"email": "second@example.com", "password": "A9#bL8@zQ"});
    assert_eq!(signup(body.clone()).await.unwrap().status(), 200);
    let mut confirm = body;
    confirm["emailConfirmCode"] = "12345".into();
    let user: Value = signup(confirm).await.unwrap().json().await.unwrap();
    let bearer = |token: &Value| format!("Bearer {}", token.as_str().expect("a token"));
    let mut credentials = vec![
        ("another partner's API key".into(), "PartnerApiKey", key.key.expose_secret().to_owned()),
        ("another partner's access token".into(), "Authorization", bearer(&token["access_token"])),
        ("another partner's end user".into(), "Authorization", bearer(&user["access_token"])),
        ("an end user's refresh token".into(), "Authorization", bearer(&user["refresh_token"])),
        ("no credential".into(), "x-none", String::new()),
    ];
    for role in [StaffRole::Compliance, StaffRole::Operator] {
        let staff = crate::kyc::staff_token(app, role).await;
        credentials.push((format!("a {role:?} staff token"), "Authorization", format!("Bearer {staff}")));
    }
    credentials
}

/// A body the route accepts in shape: the schema's example, else its required members.
fn body_for(spec: &Value, operation: &Value) -> Option<Value> {
    let content = operation.pointer("/requestBody/content")?.as_object()?;
    let (_, media) = content.iter().next()?;
    let mut schema = &media["schema"];
    if let Some(name) = schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
        schema = &spec["components"]["schemas"][name];
    }
    if let Some(example) = schema.get("example") {
        return Some(example.clone());
    }
    let mut body = Map::new();
    for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        body.insert(name.to_owned(), json!("x"));
    }
    Some(Value::Object(body))
}

on_both_backends! {
    async fn no_credential_reaches_another_partners_resources(app) {
        let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
        let ids = first_partners_ids(&app).await;
        let credentials = other_credentials(&app).await;
        // The control: the ids are real, and their owner reaches them.
        for path in [format!("/users/{}/events", ids["userId"].as_str().unwrap()), "/partner/users/tenant-a".to_owned()] {
            let response = app.client.get(app.url(&path)).header("PartnerApiKey", &app.sandbox.api_key).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
        }
        let mut probes = 0;
        for (path, item) in spec["paths"].as_object().unwrap() {
            if !path.contains('{') {
                continue;
            }
            for (method, operation) in item.as_object().unwrap() {
                // Public routes (provider webhooks, documentation) take no credential to refuse.
                if operation["security"].as_array().is_none_or(|s| s.is_empty()) {
                    continue;
                }
                let staff_route = path.starts_with("/admin/");
                let mut url = path.clone();
                for (name, value) in &ids {
                    let value = if name == "id" && staff_route { "1".to_owned() } else { value.as_str().map_or(value.to_string(), str::to_owned) };
                    url = url.replace(&format!("{{{name}}}"), &percent_encoding::utf8_percent_encode(&value, percent_encoding::NON_ALPHANUMERIC).to_string());
                }
                assert!(!url.contains('{'), "{path}: no id of the first partner for this parameter");
                let body = body_for(&spec, operation);
                for (what, header, value) in &credentials {
                    // Staff see every partner on /admin/: that is their job, not a leak.
                    if staff_route && what.contains("staff") {
                        continue;
                    }
                    let mut request = app.client.request(method.to_uppercase().parse().unwrap(), app.url(&url));
                    if !value.is_empty() {
                        request = request.header(*header, value);
                    }
                    if let Some(body) = &body {
                        request = request.json(body);
                    }
                    let response = request.send().await.unwrap();
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap();
                    assert!(matches!(status, 401 | 403 | 404), "{} {url} with {what}: {status} {text}", method.to_uppercase());
                    probes += 1;
                }
            }
        }
        assert!(probes > 150, "{probes} probes");
        eprintln!("tenant matrix: {probes} probes, every one 401, 403 or 404");
        // An id in the body instead of the path: seed 002's status lookup.
        for (what, header, value) in &credentials {
            let mut request = app.client.post(app.url("/getUserTokenV2")).json(&json!({"userId": ids["userId"]}));
            if !value.is_empty() {
                request = request.header(*header, value);
            }
            let status = request.send().await.unwrap().status().as_u16();
            assert!(matches!(status, 401 | 403 | 404), "getUserTokenV2 with {what}: {status}");
        }
    }
}
