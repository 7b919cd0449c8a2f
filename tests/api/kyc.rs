//! Seed 003 step 3 end to end: a signed-up user's profile into CIP, the SDK token from Sumsub,
//! Sumsub's webhooks moving CIP (each mapping row of the README), duplicates and late deliveries,
//! reconciliation of a lost webhook, the sandbox's simulated provider, scopes, and secrets at
//! rest. Sumsub is a local server the test starts, which checks every request's signature as
//! Sumsub does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use hmac::{Hmac, Mac};
use onboard::auth::staff::StaffRole;
use onboard::config::Settings;
use onboard::domain::now_ms;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Backend, TestApp, assert_problem};
use crate::on_both_backends;
use crate::prospects::{load_small_list, prospect};

const APP_TOKEN: &str = "sbx:test-app-token-0123456789";
const SECRET_KEY: &str = "test-secret-key-0123456789";
const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789";
const LEVEL: &str = "basic-kyc-level";

/// One request the fake received: method, path with query, and whether its signature held.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: Value,
    signed: bool,
}

#[derive(Default)]
struct SumsubState {
    seen: Vec<Seen>,
    /// externalUserId → applicant id.
    applicants: Vec<(String, String)>,
    /// What `GET …/status` answers, per applicant id.
    statuses: Vec<(String, Value)>,
}

/// A local Sumsub: recomputes `X-App-Access-Sig` over ts + METHOD + path + body with the secret
/// key and refuses (401, as Sumsub does) what does not match, a wrong app token, or a stale ts.
#[derive(Clone)]
pub struct FakeSumsub {
    url: String,
    state: Arc<Mutex<SumsubState>>,
}

impl FakeSumsub {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(SumsubState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(handle).with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn applicant_of(&self, user: &str) -> String {
        let state = self.state.lock().unwrap();
        state.applicants.iter().find(|(u, _)| u == user).map(|(_, a)| a.clone()).expect("an applicant was created")
    }

    fn set_status(&self, applicant: &str, status: Value) {
        self.state.lock().unwrap().statuses.push((applicant.to_owned(), status));
    }
}

fn signature_holds(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Ok(ts) = header("x-app-access-ts").parse::<i64>() else { return false };
    let fresh = (ts - now_ms() / 1000).abs() <= 300;
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET_KEY.as_bytes()).unwrap();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    mac.update(format!("{ts}{}{path}", method.as_str()).as_bytes());
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    fresh && header("x-app-token") == APP_TOKEN && header("x-app-access-sig") == expected
}

async fn handle(
    State(state): State<Arc<Mutex<SumsubState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let signed = signature_holds(&method, &uri, &headers, &body);
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let mut s = state.lock().unwrap();
    s.seen.push(Seen { method: method.to_string(), path: path.clone(), body: json.clone(), signed });
    if !signed {
        let error = json!({"description": "Request signature mismatch", "code": 401, "errorCode": 4003});
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    let answer = |status: StatusCode, body: Value| (status, axum::Json(body)).into_response();
    match (method.as_str(), uri.path()) {
        ("POST", "/resources/applicants") => {
            let user = json["externalUserId"].as_str().unwrap_or_default().to_owned();
            if s.applicants.iter().any(|(u, _)| *u == user) {
                let description = format!("Applicant with external user id '{user}' already exists");
                return answer(StatusCode::CONFLICT, json!({"description": description, "code": 409}));
            }
            let id = format!("{:024x}", s.applicants.len() + 0x5cb5_6e8e);
            s.applicants.push((user.clone(), id.clone()));
            answer(StatusCode::CREATED, json!({"id": id, "externalUserId": user, "review": {"reviewStatus": "init"}}))
        }
        ("POST", "/resources/accessTokens/sdk") => {
            let user = json["userId"].as_str().unwrap_or_default();
            answer(StatusCode::OK, json!({"token": format!("_act-sbx-jwt-{}", user.len()), "userId": user}))
        }
        ("GET", p) if p.starts_with("/resources/applicants/") && p.ends_with("/status") => {
            let id = p.trim_start_matches("/resources/applicants/").trim_end_matches("/status");
            let status = s.statuses.iter().rev().find(|(a, _)| a == id).map(|(_, v)| v.clone());
            answer(StatusCode::OK, status.unwrap_or_else(|| json!({"reviewStatus": "pending", "levelName": LEVEL})))
        }
        _ => answer(StatusCode::NOT_FOUND, json!({"description": "not found", "code": 404})),
    }
}

/// A staff token with a name of its own (names are unique).
pub async fn staff_token(app: &TestApp, role: StaffRole) -> String {
    use secrecy::ExposeSecret;
    let token = onboard::auth::staff::NewStaffToken::generate();
    let name = format!("staff {}", uuid::Uuid::new_v4().simple());
    onboard::core::staff::create_token(app.store(), &name, role, &token, "test", now_ms()).await.unwrap();
    token.token.expose_secret().to_owned()
}

/// A Sumsub webhook body (`createdAtMs` in Sumsub's own format).
fn event(kind: &str, user: &str, applicant: &str, at_ms: i64, result: Option<Value>) -> Vec<u8> {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000).unwrap();
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");
    let mut body = json!({
        "applicantId": applicant, "inspectionId": applicant, "correlationId": "req-1",
        "externalUserId": user, "levelName": LEVEL, "type": kind, "sandboxMode": true,
        "reviewStatus": match kind {
            "applicantReviewed" => "completed",
            "applicantOnHold" => "onHold",
            "applicantPending" => "pending",
            _ => "init",
        },
        "createdAtMs": at.format(format).unwrap(), "clientComment": "internal: never shown"
    });
    if let Some(result) = result {
        body["reviewResult"] = result;
    }
    body.to_string().into_bytes()
}

/// `X-Payload-Digest` as Sumsub computes it.
fn digest(body: &[u8], alg: &str) -> String {
    fn hex_mac<M: Mac + hmac::digest::KeyInit>(body: &[u8]) -> String {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }
    match alg {
        "HMAC_SHA1_HEX" => hex_mac::<Hmac<sha1::Sha1>>(body),
        "HMAC_SHA512_HEX" => hex_mac::<Hmac<sha2::Sha512>>(body),
        _ => hex_mac::<Hmac<Sha256>>(body),
    }
}

pub struct Kyc {
    pub app: TestApp,
    pub sumsub: FakeSumsub,
}

pub fn configure(settings: &mut Settings) {
    settings.password.memory_kib = 8 * 1024;
    settings.password.iterations = 1;
    settings.password.workers = 2;
    settings.mail.url = "log".into();
    settings.signup.per_ip_per_minute = 10_000;
    settings.signup.per_partner_per_minute = 10_000;
    settings.jobs.backoff_base_ms = 50;
    settings.kyc.sandbox_review_delay_ms = 20;
    settings.secrets.kek = Some(onboard::kek::generate().into());
}

impl Kyc {
    /// The app with Sumsub configured for its sandbox partner (through the operator route).
    async fn spawn(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<Self> {
        let sumsub = FakeSumsub::start().await;
        let app = TestApp::spawn_with(backend, |s| {
            configure(s);
            s.kyc.sumsub_base_url = sumsub.url.clone();
            tweak(s);
        })
        .await?;
        load_small_list(&app).await;
        let kyc = Self { app, sumsub };
        let response = kyc
            .set_partner_kyc(&json!({
                "provider": "sumsub", "levelName": LEVEL, "appToken": APP_TOKEN, "secretKey": SECRET_KEY,
                "webhookSecret": WEBHOOK_SECRET
            }))
            .await;
        assert_eq!(response.status(), 200);
        Some(kyc)
    }

    async fn set_partner_kyc(&self, body: &Value) -> reqwest::Response {
        let token = staff_token(&self.app, StaffRole::Operator).await;
        let path = format!("/admin/partners/{}/kyc", self.app.sandbox.partner_id);
        self.app.client.put(self.app.url(&path)).bearer_auth(token).json(body).send().await.unwrap()
    }

    /// Steps 1 and 2 of seed 003 on the sandbox partner: (access token, user id).
    pub async fn signed_up(&self, email: &str) -> (String, String) {
        let partner = self.app.sandbox.partner_id.to_string();
        let mut body = json!({"userType": "CUSTOMER", "email": email, "password": "A9#bL8@z"});
        let step =
            |body: &Value| self.app.client.post(self.app.url("/users")).header("partnerId", &partner).json(body).send();
        assert_eq!(step(&body).await.unwrap().status(), 200);
        body["emailConfirmCode"] = "12345".into();
        let answer: Value = step(&body).await.unwrap().json().await.unwrap();
        (answer["access_token"].as_str().unwrap().to_owned(), answer["user_id"].as_str().unwrap().to_owned())
    }

    pub async fn put_profile(&self, token: &str, body: &Value) -> reqwest::Response {
        self.app.client.put(self.app.url("/me/profile")).bearer_auth(token).json(body).send().await.unwrap()
    }

    pub async fn me(&self, token: &str) -> Value {
        let response = self.app.client.get(self.app.url("/me")).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn kyc_token(&self, token: &str) -> reqwest::Response {
        self.app.client.post(self.app.url("/kyc/access-token")).bearer_auth(token).send().await.unwrap()
    }

    async fn webhook(&self, body: &[u8], alg: Option<&str>, digest: Option<&str>) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .post(self.app.url("/webhooks/kyc/sumsub"))
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        if let Some(alg) = alg {
            request = request.header("X-Payload-Digest-Alg", alg);
        }
        if let Some(digest) = digest {
            request = request.header("X-Payload-Digest", digest);
        }
        request.send().await.unwrap()
    }

    /// Sends a correctly signed webhook; the effect it reports.
    async fn deliver(&self, body: &[u8]) -> String {
        let response = self.webhook(body, Some("HMAC_SHA256_HEX"), Some(&digest(body, "HMAC_SHA256_HEX"))).await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["effect"].as_str().unwrap().to_owned()
    }

    /// A user signed up, with a profile (validators done) and an applicant at Sumsub: (token,
    /// user id, applicant id).
    async fn verifying(&self, n: u32) -> (String, String, String) {
        let (token, user) = self.signed_up(&format!("ana.kyc{n}@correo.mx")).await;
        let response = self.put_profile(&token, &profile(n)).await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        self.validated(&user).await;
        let answer: Value = self.kyc_token(&token).await.json().await.unwrap();
        assert_eq!(answer["provider"], "sumsub");
        let applicant = self.sumsub.applicant_of(&user);
        (token, user, applicant)
    }

    /// Waits until the five validators have reported on the user.
    async fn validated(&self, user: &str) {
        for _ in 0..400 {
            if self.check_count(user).await >= 5 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the validators did not finish for {user}");
    }

    async fn check_count(&self, user: &str) -> i64 {
        self.scalar(&format!(
            "SELECT COUNT(*) FROM cip_checks c JOIN users u ON u.id = c.user_id WHERE u.public_id = '{user}'
             AND c.check_name <> 'kyc' AND c.generation = u.cip_generation"
        ))
        .await
    }

    async fn scalar(&self, sql: &str) -> i64 {
        crate::helpers::count(self.app.database_url(), sql).await
    }

    /// Polls `GET /me` until the user is in `status/detail`.
    pub async fn reaches(&self, token: &str, status: &str, detail: &str) {
        let mut last = Value::Null;
        for _ in 0..400 {
            last = self.me(token).await;
            if last["status"] == status && last["statusDetail"] == detail {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the user did not reach {status}/{detail}: {last}");
    }

    async fn transitions_into(&self, user: &str, status: &str) -> i64 {
        self.scalar(&format!(
            "SELECT COUNT(*) FROM user_events e JOIN users u ON u.id = e.user_id
             WHERE u.public_id = '{user}' AND e.to_status = '{status}'"
        ))
        .await
    }
}

/// Seed 002's person fields for a sign-up user (no e-mail: it is the sign-up address).
pub fn profile(n: u32) -> Value {
    let mut body = prospect(n, json!({}));
    body.as_object_mut().unwrap().remove("email");
    body
}

fn green() -> Option<Value> {
    Some(json!({"reviewAnswer": "GREEN"}))
}

fn red(reject: &str, labels: &[&str]) -> Option<Value> {
    Some(json!({"reviewAnswer": "RED", "reviewRejectType": reject, "rejectLabels": labels,
        "moderationComment": "shown to the user", "clientComment": "never shown"}))
}

on_both_backends! {
    async fn a_signed_up_user_goes_from_sign_up_to_completed(backend: Backend) {
        let Some(kyc) = Kyc::spawn(backend, |_| {}).await else { return };
        let (token, user) = kyc.signed_up("ana.walk@correo.mx").await;
        assert_eq!(kyc.me(&token).await["status"], Value::Null);
        // KYC before a profile is refused.
        assert_problem(kyc.kyc_token(&token).await, 409).await;
        let response = kyc.put_profile(&token, &profile(1)).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!((answer["userId"].as_str(), answer["status"].as_str()), (Some(user.as_str()), Some("UpgradeInProgress")));
        // Every validator passes, and still: no Completed without KYC.
        kyc.validated(&user).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let me = kyc.me(&token).await;
        assert_eq!((me["status"].as_str(), me["statusDetail"].as_str()), (Some("UpgradeInProgress"), Some("None")));
        let response = kyc.kyc_token(&token).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["provider"], "sumsub");
        assert_eq!(answer["levelName"], LEVEL);
        assert_eq!(answer["expiresIn"], 600);
        assert!(answer["token"].as_str().unwrap().starts_with("_act-"));
        // Sumsub saw signed calls: the applicant (our usr: id, no PII) and the SDK token.
        let seen = kyc.sumsub.seen();
        assert!(seen.iter().all(|s| s.signed), "{seen:?}");
        let create = seen.iter().find(|s| s.method == "POST" && s.path.starts_with("/resources/applicants")).unwrap();
        assert_eq!(create.path, format!("/resources/applicants?levelName={LEVEL}"));
        assert_eq!(create.body, json!({"externalUserId": user}));
        let sdk = seen.iter().find(|s| s.path == "/resources/accessTokens/sdk").unwrap();
        assert_eq!(sdk.body, json!({"userId": user, "levelName": LEVEL, "ttlInSecs": 600}));
        // A second token reuses the applicant.
        assert_eq!(kyc.kyc_token(&token).await.status(), 200);
        assert_eq!(kyc.sumsub.seen().iter().filter(|s| s.method == "POST" && s.path.contains("levelName")).count(), 1);
        let applicant = kyc.sumsub.applicant_of(&user);
        let at = now_ms();
        assert_eq!(kyc.deliver(&event("applicantPending", &user, &applicant, at, None)).await, "recorded");
        assert_eq!(kyc.deliver(&event("applicantReviewed", &user, &applicant, at + 1_000, green())).await, "moved");
        kyc.reaches(&token, "Completed", "None").await;
        // The partner's timeline names our status and labels, never Sumsub's comments.
        let events: Value = kyc.app.client.get(kyc.app.url(&format!("/users/{user}/events")))
            .header("PartnerApiKey", &kyc.app.sandbox.api_key).send().await.unwrap().json().await.unwrap();
        assert!(!events.to_string().contains("never shown"), "{events}");
    }

    async fn secrets_are_sealed_at_rest(backend: Backend) {
        let Some(kyc) = Kyc::spawn(backend, |_| {}).await else { return };
        let (token, _) = kyc.signed_up("ana.sealed@correo.mx").await;
        assert_eq!(kyc.put_profile(&token, &profile(2)).await.status(), 200);
        assert_eq!(kyc.kyc_token(&token).await.status(), 200);
        use sqlx::Connection;
        let url = kyc.app.database_url().to_owned();
        // Every byte of every secret column, as the database holds it.
        let sql = "SELECT app_token, secret_key, webhook_secret FROM partner_kyc";
        let keys_sql = "SELECT private_key FROM signing_keys";
        type Sealed = (Vec<u8>, Vec<u8>, Vec<u8>);
        let (secrets, keys): (Vec<Sealed>, Vec<Vec<u8>>) = if url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            (sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap(), sqlx::query_scalar(keys_sql).fetch_all(&mut conn).await.unwrap())
        } else {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            (sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap(), sqlx::query_scalar(keys_sql).fetch_all(&mut conn).await.unwrap())
        };
        assert_eq!(secrets.len(), 1);
        let contains = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
        for (app_token, secret_key, webhook_secret) in &secrets {
            for value in [app_token, secret_key, webhook_secret] {
                assert!(value.starts_with(b"okek1"), "not sealed");
                for secret in [APP_TOKEN, SECRET_KEY, WEBHOOK_SECRET] {
                    assert!(!contains(value, secret));
                }
            }
        }
        assert!(!keys.is_empty());
        for key in &keys {
            assert!(key.starts_with(b"okek1"), "a signing key is stored unsealed");
            // PKCS#8 Ed25519 private keys start with this DER prefix.
            assert!(!contains(key, "\u{30}\u{2e}\u{02}\u{01}\u{00}\u{30}\u{05}"));
        }
        // On a SQLite file, nowhere in the file either.
        if let Some(path) = url.strip_prefix("sqlite://") {
            let file = std::fs::read(path).unwrap();
            for secret in [APP_TOKEN, SECRET_KEY, WEBHOOK_SECRET] {
                assert!(!contains(&file, secret), "{secret} is in the database file");
            }
        }
        // The settings are never answered back.
        let response = kyc.set_partner_kyc(&json!({"provider": "sumsub", "levelName": LEVEL, "requiredForProspects": true})).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(!text.contains(SECRET_KEY) && !text.contains("secretKey"), "{text}");
    }

    async fn webhooks_must_carry_a_valid_digest(backend: Backend) {
        let Some(kyc) = Kyc::spawn(backend, |_| {}).await else { return };
        let (token, user, applicant) = kyc.verifying(3).await;
        let body = event("applicantReviewed", &user, &applicant, now_ms(), green());
        let wrong = digest(b"another body", "HMAC_SHA256_HEX");
        for (alg, presented) in [
            (Some("HMAC_SHA256_HEX"), Some(wrong.as_str())),
            (Some("HMAC_SHA256_HEX"), None),
            (Some("HMAC_MD5_HEX"), Some(wrong.as_str())),
            (Some("HMAC_SHA1_HEX"), Some("not hex")),
        ] {
            let problem = assert_problem(kyc.webhook(&body, alg, presented).await, 401).await;
            assert!(problem["detail"].as_str().unwrap().contains("X-Payload-Digest"));
        }
        // A digest made with the right key for another user's body does not carry over.
        let forged = event("applicantReviewed", "usr:00000000-0000-7000-8000-000000000000", &applicant, now_ms(), green());
        assert_problem(kyc.webhook(&forged, None, Some(&digest(&forged, "HMAC_SHA256_HEX"))).await, 401).await;
        assert_eq!(kyc.scalar("SELECT COUNT(*) FROM kyc_webhooks").await, 0);
        assert_eq!(kyc.me(&token).await["status"], "UpgradeInProgress");
        // Each algorithm Sumsub offers verifies (the header absent means SHA-256).
        let at = now_ms();
        for (i, alg) in ["HMAC_SHA1_HEX", "HMAC_SHA512_HEX"].into_iter().enumerate() {
            let body = event("applicantPending", &user, &applicant, at + i as i64, None);
            assert_eq!(kyc.webhook(&body, Some(alg), Some(&digest(&body, alg))).await.status(), 200, "{alg}");
        }
        let body = event("applicantReviewed", &user, &applicant, at + 10, green());
        assert_eq!(kyc.webhook(&body, None, Some(&digest(&body, "HMAC_SHA256_HEX"))).await.status(), 200);
        kyc.reaches(&token, "Completed", "None").await;
    }

    async fn duplicate_and_late_webhooks_move_cip_once(backend: Backend) {
        let Some(kyc) = Kyc::spawn(backend, |_| {}).await else { return };
        let (token, user, applicant) = kyc.verifying(4).await;
        let at = now_ms();
        let pending = event("applicantPending", &user, &applicant, at, None);
        let review = event("applicantReviewed", &user, &applicant, at + 5_000, green());
        // The review arrives first; Sumsub's retry of it and the earlier pending come later.
        assert_eq!(kyc.deliver(&review).await, "moved");
        assert_eq!(kyc.deliver(&review).await, "duplicate");
        assert_eq!(kyc.deliver(&pending).await, "stale");
        let late_red = event("applicantReviewed", &user, &applicant, at + 1_000, red("FINAL", &["FORGERY"]));
        assert_eq!(kyc.deliver(&late_red).await, "stale");
        kyc.reaches(&token, "Completed", "None").await;
        assert_eq!(kyc.transitions_into(&user, "AccountUpgradeInProgress").await, 1);
        assert_eq!(kyc.transitions_into(&user, "Completed").await, 1);
        // Each distinct delivery is stored once, as received.
        assert_eq!(kyc.scalar("SELECT COUNT(*) FROM kyc_webhooks").await, 3);
    }

    async fn reviews_map_onto_cip_as_the_readme_says(backend: Backend) {
        let Some(kyc) = Kyc::spawn(backend, |_| {}).await else { return };
        let at = now_ms();
        // RED + RETRY with a document-quality label: UnreadableDoc; resubmitted and approved: on.
        let (token, user, applicant) = kyc.verifying(5).await;
        let unreadable = event("applicantReviewed", &user, &applicant, at, red("RETRY", &["UNSATISFACTORY_PHOTOS", "SCREENSHOTS"]));
        assert_eq!(kyc.deliver(&unreadable).await, "moved");
        kyc.reaches(&token, "UpgradeSoftFailed", "UnreadableDoc").await;
        assert_eq!(kyc.deliver(&event("applicantPending", &user, &applicant, at + 1_000, None)).await, "moved");
        kyc.reaches(&token, "UpgradeInProgress", "None").await;
        assert_eq!(kyc.deliver(&event("applicantReviewed", &user, &applicant, at + 2_000, green())).await, "moved");
        kyc.reaches(&token, "Completed", "None").await;
        // RED + RETRY with other labels: ProvideAdditionalInfo.
        let (token, user, applicant) = kyc.verifying(6).await;
        kyc.deliver(&event("applicantReviewed", &user, &applicant, at, red("RETRY", &["WRONG_ADDRESS"]))).await;
        kyc.reaches(&token, "UpgradeSoftFailed", "ProvideAdditionalInfo").await;
        // RED + FINAL: UpgradeFailed/None, for good.
        let (token, user, applicant) = kyc.verifying(7).await;
        kyc.deliver(&event("applicantReviewed", &user, &applicant, at, red("FINAL", &["FORGERY"]))).await;
        kyc.reaches(&token, "UpgradeFailed", "None").await;
        // On hold: a compliance case with the KYC reason; a reviewer clears it and the user goes on.
        let (token, user, applicant) = kyc.verifying(8).await;
        kyc.deliver(&event("applicantOnHold", &user, &applicant, at, None)).await;
        kyc.reaches(&token, "UpgradePending", "Compliance").await;
        let reviewer = staff_token(&kyc.app, StaffRole::Compliance).await;
        let cases: Value = kyc.app.client.get(kyc.app.url("/admin/compliance")).bearer_auth(&reviewer)
            .send().await.unwrap().json().await.unwrap();
        let case = cases.as_array().unwrap().iter().find(|c| c["userId"] == user.as_str()).unwrap();
        assert!(case["reason"].as_str().unwrap().contains("kyc: review on hold"), "{case}");
        let clear = kyc.app.client.post(kyc.app.url(&format!("/admin/compliance/{user}/clear")))
            .bearer_auth(&reviewer).json(&json!({"reason": "documents checked by hand"})).send().await.unwrap();
        assert_eq!(clear.status(), 200, "{:?}", clear.text().await);
        kyc.reaches(&token, "Completed", "None").await;
        // The same hold reported again does not undo the officer's clearance.
        assert_eq!(kyc.deliver(&event("applicantOnHold", &user, &applicant, at + 1_000, None)).await, "recorded");
        assert_eq!(kyc.me(&token).await["status"], "Completed");
        // A final rejection after the account was opened is a compliance case, not a silent record.
        let late_final = event("applicantReviewed", &user, &applicant, at + 2_000, red("FINAL", &["FORGERY"]));
        assert_eq!(kyc.deliver(&late_final).await, "moved");
        kyc.reaches(&token, "UpgradePending", "Compliance").await;
        // Still the reviewer's case: another rejection does not fail the opened account by
        // itself, and a pass does not close it.
        let again = event("applicantReviewed", &user, &applicant, at + 3_000, red("FINAL", &["FORGERY", "SPAM"]));
        assert_eq!(kyc.deliver(&again).await, "recorded");
        assert_eq!(kyc.deliver(&event("applicantReviewed", &user, &applicant, at + 4_000, green())).await, "recorded");
        assert_eq!(kyc.me(&token).await["statusDetail"], "Compliance");
        // Cleared: the customer is provisioned again and Completed.
        let clear = kyc.app.client.post(kyc.app.url(&format!("/admin/compliance/{user}/clear")))
            .bearer_auth(&reviewer).json(&json!({"reason": "forgery ruled out"})).send().await.unwrap();
        assert_eq!(clear.status(), 200);
        kyc.reaches(&token, "Completed", "None").await;
        assert_eq!(kyc.transitions_into(&user, "Completed").await, 2);
        // New documents put on hold later are a new case, not the cleared one reported again.
        assert_eq!(kyc.deliver(&event("applicantPending", &user, &applicant, at + 5_000, None)).await, "recorded");
        assert_eq!(kyc.deliver(&event("applicantOnHold", &user, &applicant, at + 6_000, None)).await, "moved");
        kyc.reaches(&token, "UpgradePending", "Compliance").await;
    }

    async fn a_lost_webhook_is_recovered_by_reconciliation(backend: Backend) {
        let Some(kyc) = Kyc::spawn(backend, |s| s.kyc.reconcile_after_secs = 1).await else { return };
        let (token, user, applicant) = kyc.verifying(9).await;
        // Sumsub reviewed the applicant, but its webhook never arrives.
        kyc.sumsub.set_status(&applicant, json!({"reviewStatus": "completed", "levelName": LEVEL,
            "reviewResult": {"reviewAnswer": "GREEN"}}));
        kyc.reaches(&token, "Completed", "None").await;
        let polled = kyc.sumsub.seen().into_iter().filter(|s| s.path == format!("/resources/applicants/{applicant}/status")).count();
        assert!(polled >= 1);
        assert_eq!(kyc.scalar("SELECT COUNT(*) FROM kyc_webhooks WHERE source = 'reconciliation'").await, 1);
        // The webhook arriving after all changes nothing.
        let late = event("applicantReviewed", &user, &applicant, now_ms() - 60_000, green());
        assert_eq!(kyc.deliver(&late).await, "stale");
        // After a RETRY the user resubmits (applicantPending); the next review's webhook is lost
        // too, and polling, restarted by the resubmission, finds it.
        let (token, user, applicant) = kyc.verifying(19).await;
        let at = now_ms();
        kyc.deliver(&event("applicantReviewed", &user, &applicant, at, red("RETRY", &["SCREENSHOTS"]))).await;
        kyc.reaches(&token, "UpgradeSoftFailed", "UnreadableDoc").await;
        assert_eq!(kyc.deliver(&event("applicantPending", &user, &applicant, at + 1_000, None)).await, "moved");
        kyc.sumsub.set_status(&applicant, json!({"reviewStatus": "completed", "levelName": LEVEL,
            "reviewResult": {"reviewAnswer": "GREEN"}}));
        kyc.reaches(&token, "Completed", "None").await;
    }

    async fn scopes_are_enforced_on_end_user_routes(backend: Backend) {
        let Some(kyc) = Kyc::spawn(backend, |_| {}).await else { return };
        let (token, _) = kyc.signed_up("ana.scope@correo.mx").await;
        // The same session's token with only `profile:read`.
        let claims: Value = {
            use base64::Engine;
            let payload = token.split('.').nth(1).unwrap();
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
        };
        let mut narrow: onboard::auth::end_user::UserClaims = serde_json::from_value(claims).unwrap();
        narrow.scope = "profile:read".into();
        let narrow = kyc.app.state.keys.sign(&narrow).unwrap();
        assert_eq!(kyc.app.client.get(kyc.app.url("/me")).bearer_auth(&narrow).send().await.unwrap().status(), 200);
        for response in [kyc.put_profile(&narrow, &profile(10)).await, kyc.kyc_token(&narrow).await] {
            let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(challenge.contains(r#"error="insufficient_scope""#), "{challenge}");
            assert_problem(response, 403).await;
        }
        // Bad profiles: seed 002's 400s, and the e-mail is not part of it.
        let mut bad = profile(10);
        bad["dateOfBirth"] = "2020-01-01".into();
        let problem = assert_problem(kyc.put_profile(&token, &bad).await, 400).await;
        assert_eq!(problem["errors"][0]["field"], "dateOfBirth");
        let mut with_email = profile(10);
        with_email["email"] = "other@correo.mx".into();
        assert_problem(kyc.put_profile(&token, &with_email).await, 400).await;
        assert_eq!(kyc.me(&token).await["status"], Value::Null);
        // A phone another user of the partner has: 409.
        assert_eq!(kyc.put_profile(&token, &profile(10)).await.status(), 200);
        let (other, _) = kyc.signed_up("ana.scope2@correo.mx").await;
        assert_problem(kyc.put_profile(&other, &profile(10)).await, 409).await;
        // A profile for a user already in CIP (and not soft-failed): 409.
        assert_problem(kyc.put_profile(&token, &profile(11)).await, 409).await;
    }

    async fn the_sandbox_provider_follows_its_triggers(app, configure) {
        load_small_list(&app).await;
        let kyc = Kyc { app, sumsub: FakeSumsub::start().await };
        for (n, last_name, status, detail) in [
            (12, "Hernández", "Completed", "None"),
            (13, "Retry", "UpgradeSoftFailed", "UnreadableDoc"),
            (14, "Reject", "UpgradeFailed", "None"),
            (15, "Hold", "UpgradePending", "Compliance"),
        ] {
            let (token, _) = kyc.signed_up(&format!("ana.sbx{n}@correo.mx")).await;
            let mut body = profile(n);
            body["lastName"] = last_name.into();
            assert_eq!(kyc.put_profile(&token, &body).await.status(), 200);
            let response = kyc.kyc_token(&token).await;
            assert_eq!(response.status(), 200);
            let answer: Value = response.json().await.unwrap();
            assert!(answer["token"].as_str().unwrap().starts_with("_act-sandbox-"));
            kyc.reaches(&token, status, detail).await;
        }
        // No call left the process.
        assert!(kyc.sumsub.seen().is_empty());
        assert!(kyc.scalar("SELECT COUNT(*) FROM kyc_webhooks WHERE source = 'sandbox'").await >= 4);
    }

    async fn prospects_need_kyc_only_where_the_partner_says_so(backend: Backend) {
        let Some(kyc) = Kyc::spawn(backend, |_| {}).await else { return };
        let register = |body: Value| {
            kyc.app.client.post(kyc.app.url("/register-user-v2")).header("PartnerApiKey", &kyc.app.sandbox.api_key).json(&body).send()
        };
        let token_for = |user: String| {
            kyc.app.client.post(kyc.app.url(&format!("/users/{user}/kyc/access-token")))
                .header("PartnerApiKey", &kyc.app.sandbox.api_key).send()
        };
        let without: Value = register(prospect(16, json!({}))).await.unwrap().json().await.unwrap();
        let user = without["userId"].as_str().unwrap().to_owned();
        assert_problem(token_for(user.clone()).await.unwrap(), 409).await;
        assert_eq!(crate::prospects::settled(&kyc.app, &user).await, ("Completed".into(), "None".into()));
        let response = kyc.set_partner_kyc(&json!({"provider": "sumsub", "levelName": LEVEL, "requiredForProspects": true})).await;
        assert_eq!(response.status(), 200);
        let with: Value = register(prospect(17, json!({}))).await.unwrap().json().await.unwrap();
        let user = with["userId"].as_str().unwrap().to_owned();
        let response = token_for(user.clone()).await.unwrap();
        assert_eq!(response.status(), 200);
        let applicant = kyc.sumsub.applicant_of(&user);
        kyc.deliver(&event("applicantReviewed", &user, &applicant, now_ms(), green())).await;
        assert_eq!(crate::prospects::settled(&kyc.app, &user).await, ("Completed".into(), "None".into()));
        // A partner credential never configures KYC, and a live partner needs a KEK.
        let response = kyc.app.client.put(kyc.app.url(&format!("/admin/partners/{}/kyc", kyc.app.sandbox.partner_id)))
            .header("PartnerApiKey", &kyc.app.sandbox.api_key).json(&json!({})).send().await.unwrap();
        assert_eq!(response.status(), 401);
    }

    async fn resets_other_events_and_corrections(backend: Backend) {
        let Some(kyc) = Kyc::spawn(backend, |_| {}).await else { return };
        // A partner cannot correct a sign-up user who has no profile (was a 500).
        let (_, bare) = kyc.signed_up("ana.bare@correo.mx").await;
        let patch = kyc.app.client.patch(kyc.app.url(&format!("/users/{bare}")))
            .header("PartnerApiKey", &kyc.app.sandbox.api_key).json(&json!({"city": "Mérida"})).send().await.unwrap();
        assert_problem(patch, 409).await;
        let (token, user, applicant) = kyc.verifying(18).await;
        let at = now_ms();
        kyc.deliver(&event("applicantReviewed", &user, &applicant, at, red("RETRY", &["BACK_SIDE_MISSING"]))).await;
        kyc.reaches(&token, "UpgradeSoftFailed", "UnreadableDoc").await;
        // The user fixes a profile field meanwhile: the KYC result is kept, so still UnreadableDoc.
        let mut corrected = profile(18);
        corrected["city"] = "Playa del Carmen".into();
        let response = kyc.put_profile(&token, &corrected).await;
        assert_eq!(response.status(), 200);
        kyc.reaches(&token, "UpgradeSoftFailed", "UnreadableDoc").await;
        // Sumsub resets the applicant: back to validation, waiting for the next review.
        assert_eq!(kyc.deliver(&event("applicantReset", &user, &applicant, at + 1_000, None)).await, "moved");
        kyc.reaches(&token, "UpgradeInProgress", "None").await;
        // Types Onboard does not act on are acknowledged and stored.
        assert_eq!(kyc.deliver(&event("applicantActivated", &user, &applicant, at + 1_500, None)).await, "ignored");
        assert_eq!(kyc.deliver(&event("applicantReviewed", &user, &applicant, at + 2_000, green())).await, "moved");
        kyc.reaches(&token, "Completed", "None").await;
        assert_eq!(kyc.transitions_into(&user, "Completed").await, 1);
    }

    async fn a_verified_identity_cannot_be_renamed(backend: Backend) {
        let Some(kyc) = Kyc::spawn(backend, |_| {}).await else { return };
        let (token, user) = kyc.signed_up("ana.rename@correo.mx").await;
        // An address outside the country soft-fails the address check; KYC passes meanwhile.
        let mut body = profile(20);
        body["addressLatitude"] = 40.4.into();
        body["addressLongitude"] = (-3.7).into();
        assert_eq!(kyc.put_profile(&token, &body).await.status(), 200);
        kyc.validated(&user).await;
        assert_eq!(kyc.kyc_token(&token).await.status(), 200);
        let applicant = kyc.sumsub.applicant_of(&user);
        kyc.deliver(&event("applicantReviewed", &user, &applicant, now_ms(), green())).await;
        kyc.reaches(&token, "UpgradeSoftFailed", "InvalidAddress").await;
        // Another name (or date of birth) would carry the pass over to an unverified identity.
        let mut renamed = profile(20);
        renamed["lastName"] = "Otra".into();
        let problem = assert_problem(kyc.put_profile(&token, &renamed).await, 409).await;
        assert!(problem["detail"].as_str().unwrap().contains("verified"), "{problem}");
        // The address alone may be corrected; the pass is kept.
        assert_eq!(kyc.put_profile(&token, &profile(20)).await.status(), 200);
        kyc.reaches(&token, "Completed", "None").await;
    }

    async fn partner_settings_are_checked_and_webhook_urls_may_name_the_partner(backend: Backend) {
        let Some(kyc) = Kyc::spawn(backend, |_| {}).await else { return };
        for (body, field) in [
            (json!({"provider": "sumsub", "levelName": LEVEL, "webhookSecret": "short"}), "body"),
            (json!({"provider": "sumsub", "levelName": LEVEL, "secretKey": "  "}), "body"),
            (json!({"provider": "sumsub", "levelName": " "}), "body"),
            (json!({"provider": "onfido", "levelName": LEVEL}), "provider"),
        ] {
            let problem = assert_problem(kyc.set_partner_kyc(&body).await, 400).await;
            assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        }
        let (_, user, applicant) = kyc.verifying(21).await;
        let partner = kyc.app.sandbox.partner_id;
        let hinted = |body: &[u8], partner: String| {
            kyc.app.client.post(kyc.app.url(&format!("/webhooks/kyc/sumsub?partnerId={partner}")))
                .header("X-Payload-Digest", digest(body, "HMAC_SHA256_HEX")).body(body.to_vec()).send()
        };
        // Authenticated but unusable: stored and acknowledged, so Sumsub does not retry it for ever.
        let response = hinted(br#"{"type":"applicantWorkflowCompleted"}"#, partner.to_string()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap()["effect"], "ignored");
        // A good body under a partner whose secret did not sign it: 401.
        let body = event("applicantReviewed", &user, &applicant, now_ms(), green());
        assert_problem(hinted(&body, "999".into()).await.unwrap(), 401).await;
        assert_problem(hinted(&body, "x".into()).await.unwrap(), 400).await;
        assert_eq!(hinted(&body, partner.to_string()).await.unwrap().status(), 200);
        assert_eq!(kyc.scalar("SELECT COUNT(*) FROM kyc_webhooks").await, 2);
    }

    async fn a_live_partner_needs_kyc_settings_before_its_users_enter_cip(backend: Backend) {
        use onboard::auth::credentials::{NewApiKey, NewClient};
        use onboard::core::kyc::{KycConfig, Profile};
        use onboard::domain::{Environment, PartnerName};
        use secrecy::ExposeSecret;
        let Some(kyc) = Kyc::spawn(backend, |_| {}).await else { return };
        let key = NewApiKey::generate(Environment::Live);
        let name = PartnerName::parse("Acme Live").unwrap();
        let store = kyc.app.store();
        let partner = store.create_partner(&name, Environment::Live, &key, &NewClient::generate(), now_ms()).await.unwrap();
        let created: Value = kyc.app.client.post(kyc.app.url("/partner/users"))
            .header("PartnerApiKey", key.key.expose_secret())
            .json(&json!({"externalUserId": "live-1", "method": "NONE", "type": "INDIVIDUAL"}))
            .send().await.unwrap().json().await.unwrap();
        let user: onboard::domain::PublicUserId = created["userId"].as_str().unwrap().parse().unwrap();
        let body = profile(22);
        let prospect = onboard::http::prospects::parse_registration(body.as_object().unwrap(), time::OffsetDateTime::now_utc().date()).unwrap();
        let submit = || Profile { user: user.clone(), partner: partner.id, prospect: prospect.clone(), actor: "test".into() };
        let refused = onboard::core::kyc::submit_profile(store, submit(), now_ms()).await;
        assert!(matches!(refused, Err(onboard::core::onboarding::MoveError::KycNotConfigured)), "{refused:?}");
        // Settings with the KEK configured: the user may enter CIP.
        let config = KycConfig {
            provider: onboard::domain::kyc::ProviderKind::Sumsub,
            level_name: LEVEL.into(),
            required_for_prospects: false,
            app_token: Some(APP_TOKEN.to_owned().into()),
            secret_key: Some(SECRET_KEY.to_owned().into()),
            webhook_secret: Some(WEBHOOK_SECRET.to_owned().into()),
        };
        onboard::core::kyc::configure(store, kyc.app.state.kyc.kek(), &partner, config.clone(), "test", now_ms()).await.unwrap();
        let entered = onboard::core::kyc::submit_profile(store, submit(), now_ms()).await.unwrap();
        assert_eq!(entered, onboard::domain::cip::CipState::ACCEPTED);
        // Without a KEK, a live partner cannot be given provider secrets at all.
        let no_kek = onboard::kek::Kek::development();
        let refused = onboard::core::kyc::configure(store, &no_kek, &partner, config, "test", now_ms()).await;
        assert!(matches!(refused, Err(onboard::core::kyc::ConfigError::NeedsKek)), "{refused:?}");
    }

    async fn tokens_need_their_own_session_and_a_start_in_the_past(backend: Backend) {
        let Some(kyc) = Kyc::spawn(backend, |_| {}).await else { return };
        let claims = |token: &str| -> Value {
            use base64::Engine;
            let payload = token.split('.').nth(1).unwrap();
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
        };
        let me = |token: String| kyc.app.client.get(kyc.app.url("/me")).bearer_auth(token).send();
        let (a, _) = kyc.signed_up("ana.sid1@correo.mx").await;
        let (b, _) = kyc.signed_up("ana.sid2@correo.mx").await;
        // Signed with the service's own key (only a key holder could): A's token with B's session.
        let mut mixed = claims(&a);
        mixed["sid"] = claims(&b)["sid"].clone();
        assert_problem(me(kyc.app.state.keys.sign(&mixed).unwrap()).await.unwrap(), 401).await;
        // Not valid before an hour from now.
        let mut early = claims(&a);
        early["nbf"] = (now_ms() / 1000 + 3600).into();
        assert_problem(me(kyc.app.state.keys.sign(&early).unwrap()).await.unwrap(), 401).await;
        let mut partner = claims(&kyc.app.sandbox_token().await);
        partner["nbf"] = (now_ms() / 1000 + 3600).into();
        let early_partner = kyc.app.state.keys.sign(&partner).unwrap();
        assert_eq!(kyc.app.get_partner_with_bearer(&early_partner).await.status(), 401);
        // The genuine tokens still work.
        assert_eq!(me(a).await.unwrap().status(), 200);
        assert_eq!(me(b).await.unwrap().status(), 200);
    }
}
