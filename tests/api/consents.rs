//! Seed 002's OTP consents: a code by SMS through a local server that checks what Twilio checks
//! (Basic auth with the account SID and auth token, the form fields), wrong codes, expiry, the
//! attempt limit and the resend throttle, then the status moving on; e-mail codes; the evidence;
//! and the boolean form for partners that collect consents themselves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use onboard::auth::credentials::{NewApiKey, NewClient};
use onboard::domain::{Environment, PartnerName, now_ms};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};
use crate::on_both_backends;
use crate::prospects::{load_small_list, prospect};

const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
const AUTH_TOKEN: &str = "twilio-test-auth-token";
const FROM: &str = "+15005550006";

/// The messages the fake accepted: (To, Body).
type Sent = Arc<Mutex<Vec<(String, String)>>>;

/// A stand-in for Twilio's Messages API: refuses wrong credentials and incomplete forms as
/// Twilio does (401 code 20003, 400 code 21604/21602), records what it accepts.
#[derive(Clone, Default)]
struct FakeTwilio {
    sent: Sent,
    url: String,
}

impl FakeTwilio {
    async fn start() -> Self {
        let sent: Sent = Arc::default();
        let app = axum::Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", axum::routing::post(messages))
            .with_state(sent.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { sent, url }
    }

    fn messages(&self) -> Vec<(String, String)> {
        self.sent.lock().unwrap().clone()
    }

    /// The six digits of the newest message to `to`.
    fn code_sent_to(&self, to: &str) -> Option<String> {
        let messages = self.messages();
        let body = messages.iter().rev().find(|(number, _)| number == to)?.1.clone();
        Some(body.chars().take(6).collect())
    }
}

async fn messages(
    State(sent): State<Sent>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> impl IntoResponse {
    let expected =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}")));
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
    if sid != ACCOUNT_SID || !authorized {
        let body = json!({"code": 20003, "message": "Authenticate", "status": 401});
        return (StatusCode::UNAUTHORIZED, axum::Json(body));
    }
    let (Some(to), Some(body)) = (form.get("To"), form.get("Body")) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"code": 21604, "message": "A 'To' phone number is required."})),
        );
    };
    if form.get("From").map(String::as_str) != Some(FROM) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"code": 21602, "message": "A 'From' phone number is required."})),
        );
    }
    sent.lock().unwrap().push((to.clone(), body.clone()));
    (
        StatusCode::CREATED,
        axum::Json(json!({"sid": format!("SM{:032}", sent.lock().unwrap().len()), "status": "queued"})),
    )
}

/// A live partner (codes are random and really sent) whose users confirm consents by code.
async fn live_partner(app: &TestApp, required: Value) -> String {
    let key = NewApiKey::generate(Environment::Live);
    let name = PartnerName::parse("Banco Ejemplo").unwrap();
    app.store().create_partner(&name, Environment::Live, &key, &NewClient::generate(), now_ms()).await.unwrap();
    let key = key.key.expose_secret().to_owned();
    let settings = json!({"requiredConsents": required, "consentConfirmation": "otp"});
    let response =
        app.client.patch(app.url("/partner")).header("PartnerApiKey", &key).json(&settings).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["consentConfirmation"], "otp");
    key
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url(path)).header("PartnerApiKey", key).json(&body).send().await.unwrap()
}

async fn register(app: &TestApp, key: &str, body: &Value) -> String {
    let answer: Value = post(app, key, "/register-user-v2", body.clone()).await.json().await.unwrap();
    answer["userId"].as_str().expect("accepted").to_owned()
}

async fn settled(app: &TestApp, key: &str, user: &str) -> String {
    for _ in 0..600 {
        let answer: Value = post(app, key, "/getUserTokenV2", json!({"userId": user})).await.json().await.unwrap();
        let status = answer["status"].as_str().unwrap();
        if status != "UpgradeInProgress" && status != "AccountUpgradeInProgress" {
            return format!("{status}/{}", answer["statusDetail"].as_str().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{user} did not settle");
}

/// Waits for the `sms.send` job to reach the fake server; returns the code it carried.
async fn code_by_sms(twilio: &FakeTwilio, to: &str, messages_before: usize) -> String {
    for _ in 0..200 {
        if twilio.messages().len() > messages_before {
            return twilio.code_sent_to(to).expect("a message to the user's phone");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no SMS reached the provider");
}

on_both_backends! {
    async fn otp_consents_by_sms_with_wrong_codes_expiry_attempts_and_throttle(backend: Backend) {
        let twilio = FakeTwilio::start().await;
        let url = twilio.url.clone();
        let Some(app) = TestApp::spawn_with(backend, move |s| {
            s.sms.twilio_api_base = url;
            s.sms.twilio_account_sid = ACCOUNT_SID.into();
            s.sms.twilio_auth_token = Some(AUTH_TOKEN.into());
            s.sms.twilio_from = FROM.into();
            s.consents.resend_interval_secs = 1;
            s.consents.max_sends_per_day = 3;
        }).await else { return };
        load_small_list(&app).await;
        let key = live_partner(&app, json!(["privacy", "contract"])).await;
        let body = prospect(1, json!({}));
        // The number on file, as stored (E.164, normalised).
        let phone = onboard::domain::Phone::parse(body["phoneNumber"].as_str().unwrap()).unwrap().e164().to_owned();
        let user = register(&app, &key, &body).await;
        assert_eq!(settled(&app, &key, &user).await, "UpgradePending/OtpPrivacyMissing");

        // The boolean form is refused for this partner: its users confirm by code.
        assert_problem(post(&app, &key, &format!("/users/{user}/consents"), json!({"privacy": true})).await, 409).await;

        // A code by SMS, to the phone on file; the answer shows it masked, never the code.
        let otp_path = format!("/users/{user}/consents/privacy/otp");
        let sent = post(&app, &key, &otp_path, json!({"documentVersion": "privacy-2026-01"})).await;
        assert_eq!(sent.status(), 202);
        let sent: Value = sent.json().await.unwrap();
        assert_eq!((sent["channel"].as_str(), sent["consent"].as_str()), (Some("sms"), Some("privacy")));
        let masked = onboard::pii::MaskedPhone(&phone).to_string();
        assert_eq!(sent["sentTo"], masked.as_str());
        let first = code_by_sms(&twilio, &phone, 0).await;
        assert!(first.bytes().all(|b| b.is_ascii_digit()) && first.len() == 6, "{first}");
        // Another code at once: refused with Retry-After.
        let again = post(&app, &key, &otp_path, json!({"documentVersion": "privacy-2026-01"})).await;
        assert_eq!(again.status(), 429);
        assert!(again.headers().contains_key("retry-after"));

        // A wrong code: 400 on `otp`, the attempt counts, nothing moves.
        let consents = format!("/users/{user}/consents");
        let wrong = if first == "000000" { "111111" } else { "000000" };
        let problem = assert_problem(post(&app, &key, &consents, json!({"privacy": true, "otp": wrong})).await, 400).await;
        assert_eq!(problem["errors"][0]["field"], "otp");
        // Malformed codes and two consents with one code change nothing either.
        for bad in [json!({"privacy": true, "otp": "12345"}), json!({"privacy": true, "otp": 123456}), json!({"privacy": true, "contract": true, "otp": first})] {
            assert_problem(post(&app, &key, &consents, bad).await, 400).await;
        }
        // Expired: the code's time is up (moved back in the database rather than waiting 10 minutes).
        sqlx_exec(&app, "UPDATE consent_codes SET expires_at = 0").await;
        let problem = assert_problem(post(&app, &key, &consents, json!({"privacy": true, "otp": first})).await, 400).await;
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains("expired"), "{problem}");

        // A new code; five wrong attempts spend it, after which even the right one is refused.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let before = twilio.messages().len();
        assert_eq!(post(&app, &key, &otp_path, json!({"documentVersion": "privacy-2026-02", "channel": "sms"})).await.status(), 202);
        let second = code_by_sms(&twilio, &phone, before).await;
        let wrong = if second == "000000" { "111111" } else { "000000" };
        for _ in 0..5 {
            assert_problem(post(&app, &key, &consents, json!({"privacy": true, "otp": wrong})).await, 400).await;
        }
        let problem = assert_problem(post(&app, &key, &consents, json!({"privacy": true, "otp": second})).await, 400).await;
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains("too many"), "{problem}");
        assert_eq!(settled(&app, &key, &user).await, "UpgradePending/OtpPrivacyMissing");

        // A third code, entered right: the consent is recorded and the status moves on.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let before = twilio.messages().len();
        assert_eq!(post(&app, &key, &otp_path, json!({"documentVersion": "privacy-2026-02"})).await.status(), 202);
        let third = code_by_sms(&twilio, &phone, before).await;
        let moved: Value = post(&app, &key, &consents, json!({"privacy": true, "otp": third})).await.json().await.unwrap();
        assert_eq!(moved["statusDetail"], "OtpContractMissing");
        // The same code again: used up.
        assert_problem(post(&app, &key, &consents, json!({"privacy": true, "otp": third})).await, 409).await;
        assert_problem(post(&app, &key, &otp_path, json!({"documentVersion": "privacy-2026-02"})).await, 409).await;

        // The contract by e-mail, to the address on file (the mail job delivers it).
        let contract = post(&app, &key, &format!("/users/{user}/consents/contract/otp"), json!({"documentVersion": "contract-7", "channel": "email"})).await;
        assert_eq!(contract.status(), 202);
        let contract: Value = contract.json().await.unwrap();
        assert_eq!(contract["sentTo"], "a***@correo.mx");
        // Three codes a day for one consent: a fourth waits for the day to pass, whatever the interval.
        let contract_otp = format!("/users/{user}/consents/contract/otp");
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            assert_eq!(post(&app, &key, &contract_otp, json!({"documentVersion": "contract-7", "channel": "email"})).await.status(), 202);
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let capped = post(&app, &key, &contract_otp, json!({"documentVersion": "contract-7", "channel": "email"})).await;
        assert_eq!(capped.status(), 429);
        let wait: u64 = capped.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(wait > 86_000, "{wait}");
        assert!(twilio.messages().iter().all(|(_, body)| body.ends_with("Do not share it.")));

        // The evidence: when, to which masked number, which document version.
        let evidence: Value = app.client.get(app.url(&consents)).header("PartnerApiKey", &key).send().await.unwrap().json().await.unwrap();
        let given = &evidence["consents"][0];
        assert_eq!((given["consent"].as_str(), given["method"].as_str()), (Some("privacy"), Some("otp")));
        assert_eq!((given["channel"].as_str(), given["sentTo"].as_str()), (Some("sms"), Some(masked.as_str())));
        assert_eq!(given["documentVersion"], "privacy-2026-02");
        assert!(given["codeSentAt"].as_i64().unwrap() <= given["givenAt"].as_i64().unwrap());
        assert_eq!(given["actor"].as_str().unwrap().split(':').next(), Some("partner"));
        // Codes are kept only as digests: no message body, no code in the tables.
        let stored = count(&app, &format!("SELECT COUNT(*) FROM jobs WHERE payload LIKE '%{third}%'")).await;
        assert_eq!(stored, 0, "a delivered code does not stay in the job table");

        // Another partner cannot send codes to, or read consents of, this user.
        let sandbox = app.sandbox.api_key.clone();
        assert_problem(post(&app, &sandbox, &otp_path, json!({"documentVersion": "x"})).await, 404).await;
        let foreign = app.client.get(app.url(&consents)).header("PartnerApiKey", &sandbox).send().await.unwrap();
        assert_problem(foreign, 404).await;
    }

    async fn sandbox_codes_are_123456_and_the_boolean_form_still_works(app) {
        load_small_list(&app).await;
        let key = app.sandbox.api_key.clone();
        let required = json!({"requiredConsents": ["privacy", "contract"]});
        assert_eq!(app.client.patch(app.url("/partner")).header("PartnerApiKey", &key).json(&required).send().await.unwrap().status(), 200);
        // Partners that collect consents themselves (the default) post booleans.
        let stated = register(&app, &key, &prospect(2, json!({}))).await;
        assert_eq!(settled(&app, &key, &stated).await, "UpgradePending/OtpPrivacyMissing");
        let both: Value = post(&app, &key, &format!("/users/{stated}/consents"), json!({"privacy": true, "contract": true})).await.json().await.unwrap();
        assert_eq!(both["status"], "AccountUpgradeInProgress");
        let evidence: Value = app.client.get(app.url(&format!("/users/{stated}/consents"))).header("PartnerApiKey", &key).send().await.unwrap().json().await.unwrap();
        assert_eq!(evidence["consents"].as_array().unwrap().len(), 2);
        assert_eq!(evidence["consents"][0]["method"], "partner");

        // A sandbox partner may also use codes: always 123456, and no SMS provider is needed.
        let coded = register(&app, &key, &prospect(3, json!({}))).await;
        assert_eq!(settled(&app, &key, &coded).await, "UpgradePending/OtpPrivacyMissing");
        for consent in ["privacy", "contract"] {
            let sent = post(&app, &key, &format!("/users/{coded}/consents/{consent}/otp"), json!({"documentVersion": "v1"})).await;
            assert_eq!(sent.status(), 202, "{consent}");
            let mut body = json!({"otp": "123456"});
            body[consent] = json!(true);
            let given = post(&app, &key, &format!("/users/{coded}/consents"), body).await;
            assert_eq!(given.status(), 200, "{consent}");
        }
        assert_eq!(settled(&app, &key, &coded).await, "Completed/None");

        // Bad requests change nothing.
        let path = format!("/users/{coded}/consents/marketing/otp");
        assert_problem(post(&app, &key, &path, json!({"documentVersion": "v1"})).await, 404).await;
        let fresh = register(&app, &key, &prospect(4, json!({}))).await;
        let otp = format!("/users/{fresh}/consents/privacy/otp");
        for bad in [json!({}), json!({"documentVersion": ""}), json!({"documentVersion": "v1", "channel": "fax"}), json!({"documentVersion": "v1", "extra": 1})] {
            assert_problem(post(&app, &key, &otp, bad).await, 400).await;
        }
        assert_eq!(count(&app, "SELECT COUNT(*) FROM consent_codes").await, 0);
        // Without an SMS provider a live partner's SMS code is refused, not silently dropped.
        let live = live_partner(&app, json!(["privacy"])).await;
        let live_user = register(&app, &live, &prospect(5, json!({}))).await;
        let refused = post(&app, &live, &format!("/users/{live_user}/consents/privacy/otp"), json!({"documentVersion": "v1"})).await;
        assert_problem(refused, 409).await;
    }
}

/// Runs an UPDATE of one row behind the API.
async fn sqlx_exec(app: &TestApp, sql: &str) {
    crate::helpers::count(app.database_url(), &format!("{sql} RETURNING CAST(1 AS BIGINT)")).await;
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    crate::helpers::count(app.database_url(), sql).await
}
