//! Partner webhooks end to end: real local receivers the tests start, every delivery verified by
//! the README's Python function (an implementation independent of the server's), each event
//! type once per subscribed endpoint, retries with the same `webhook-id`, `Retry-After`, 3xx,
//! 410, secret rotation, an endpoint that never answers, SSRF refusals for live partners, and
//! tenant isolation.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use onboard::auth::credentials::{NewApiKey, NewClient};
use onboard::config::Settings;
use onboard::domain::{Environment, PartnerName, now_ms};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};
use crate::on_both_backends;

/// What a receiver answers, in order; then `then` for the rest.
#[derive(Debug, Clone)]
enum Answer {
    Status(u16),
    /// A status with a `Retry-After` (seconds).
    RetryAfter(u16, u64),
    /// A redirect to `Location`.
    Redirect(u16, String),
    /// Never answers.
    Hang,
}

#[derive(Debug, Clone)]
pub struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    at: Instant,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap().to_owned()
    }
}

struct ReceiverState {
    received: Vec<Received>,
    script: VecDeque<Answer>,
    then: Answer,
}

/// An HTTP server that records every request and answers as scripted.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    async fn start(script: Vec<Answer>, then: Answer) -> Self {
        let state = Arc::new(Mutex::new(ReceiverState { received: Vec::new(), script: script.into(), then }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(receive).with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    pub async fn ok() -> Self {
        Self::start(Vec::new(), Answer::Status(204)).await
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    fn of_type(&self, event_type: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.event_type() == event_type).collect()
    }

    /// Waits until `done` holds for what arrived (or fails after ~60 s).
    pub async fn until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..2400 {
            let received = self.received();
            if done(&received) {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let types: Vec<String> = self.received().iter().map(Received::event_type).collect();
        panic!("{what}: the receiver got {types:?}");
    }
}

async fn receive(State(state): State<Arc<Mutex<ReceiverState>>>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = {
        let mut state = state.lock().unwrap();
        let headers = headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect();
        state.received.push(Received { headers, body: body.to_vec(), at: Instant::now() });
        let then = state.then.clone();
        state.script.pop_front().unwrap_or(then)
    };
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::RetryAfter(code, secs) => {
            (StatusCode::from_u16(code).unwrap(), [("retry-after", secs.to_string())]).into_response()
        }
        Answer::Redirect(code, to) => (StatusCode::from_u16(code).unwrap(), [("location", to)]).into_response(),
        Answer::Hang => std::future::pending().await,
    }
}

/// The README's verification function, run by Python on each (secret, delivery): its verdicts.
fn verified_by_readme(cases: &[(&str, &Received)]) -> Vec<bool> {
    let readme = include_str!("../../README.md");
    let block =
        readme.split("<!-- webhook-verify:start -->").nth(1).unwrap().split("<!-- webhook-verify:end -->").next();
    let code = block.unwrap().trim().trim_start_matches("```python").trim_end_matches("```");
    let driver = format!(
        "{code}\nimport json, sys\ncases = json.load(sys.stdin)\n\
         print(json.dumps([verify(c['secret'], c['headers'], base64.b64decode(c['body'])) for c in cases]))\n"
    );
    let input: Vec<Value> = cases
        .iter()
        .map(|(secret, r)| {
            json!({"secret": secret, "headers": r.headers, "body": base64::engine::general_purpose::STANDARD.encode(&r.body)})
        })
        .collect();
    let mut child = std::process::Command::new("python3")
        .args(["-c", &driver])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the README's verification function");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(serde_json::to_string(&input).unwrap().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the README's verify() failed to run");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every delivery verifies with `secret`, and fails once its body is altered.
fn assert_signed(secret: &str, received: &[Received]) {
    let mut cases: Vec<(&str, &Received)> = received.iter().map(|r| (secret, r)).collect();
    let tampered: Vec<Received> = received
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.body.push(b' ');
            r
        })
        .collect();
    cases.extend(tampered.iter().map(|r| (secret, r)));
    let verdicts = verified_by_readme(&cases);
    let (genuine, altered) = verdicts.split_at(received.len());
    assert!(genuine.iter().all(|v| *v), "a delivery's signature did not verify: {genuine:?}");
    assert!(altered.iter().all(|v| !*v), "an altered body verified");
}

fn configure(settings: &mut Settings) {
    crate::kyc::configure(settings);
    settings.webhooks.allow_loopback = true;
    settings.webhooks.schedule_secs = vec![0; 9];
}

impl TestApp {
    async fn add_endpoint(&self, key: &str, body: Value) -> Value {
        let response = self.webhooks_call(reqwest::Method::POST, "", key, Some(body)).await;
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    async fn webhooks_call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request =
            self.client.request(method, self.url(&format!("/partner/webhooks{path}"))).header("PartnerApiKey", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// A seed-001 user (`POST /User`), for an event.
    async fn some_user(&self, n: u32) {
        let token = self.sandbox_token().await;
        let body = format!(r#"{{"merchantId": {}, "email": "user{n}@example.org"}}"#, self.sandbox.partner_id);
        assert_eq!(self.post_user(&token, &body).await.status(), 201);
    }

    /// The partner's events with their attempts.
    async fn webhook_events(&self, key: &str, query: &str) -> Value {
        let response = self.webhooks_call(reqwest::Method::GET, &format!("/events{query}"), key, None).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// A live partner's API key.
async fn live_partner(app: &TestApp) -> String {
    let key = NewApiKey::generate(Environment::Live);
    let name = PartnerName::parse("Live Partner").unwrap();
    app.store().create_partner(&name, Environment::Live, &key, &NewClient::generate(), now_ms()).await.unwrap();
    key.key.expose_secret().to_owned()
}

on_both_backends! {
    async fn each_event_type_arrives_once_per_subscribed_endpoint_signed(app, configure) {
        crate::prospects::load_small_list(&app).await;
        let key = app.sandbox.api_key.clone();
        let (all, created, reviewed) = (Receiver::ok().await, Receiver::ok().await, Receiver::ok().await);
        let all_ep = app.add_endpoint(&key, json!({"url": all.url, "description": "everything"})).await;
        assert_eq!(all_ep["events"], json!(["*"]));
        assert!(all_ep["secret"].as_str().unwrap().starts_with("whsec_"));
        let created_ep = app.add_endpoint(&key, json!({"url": created.url, "events": ["user.created"]})).await;
        let reviewed_ep = app.add_endpoint(&key, json!({"url": reviewed.url, "events": ["kyc.reviewed"]})).await;

        // A user on each of the four surfaces; the seed-003 one through KYC (the sandbox provider).
        let response = app.client.post(app.url("/partner/users")).header("PartnerApiKey", &key)
            .json(&json!({"externalUserId": "ext-1", "method": "NONE", "identifier": null, "type": "INDIVIDUAL"}))
            .send().await.unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        app.some_user(1).await;
        let response = app.client.post(app.url("/register-user-v2")).header("PartnerApiKey", &key)
            .json(&crate::prospects::prospect(71, json!({}))).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let prospect: Value = response.json().await.unwrap();
        let partner = app.sandbox.partner_id.to_string();
        let step = |body: Value| app.client.post(app.url("/users")).header("partnerId", &partner).json(&body).send();
        let mut body = json!({"userType": "CUSTOMER", "email": "ana.hooks@correo.mx", "password": "A9#bL8@z"});
        assert_eq!(step(body.clone()).await.unwrap().status(), 200);
        body["emailConfirmCode"] = "12345".into();
        let signed_up: Value = step(body).await.unwrap().json().await.unwrap();
        let token = signed_up["access_token"].as_str().unwrap();
        let response = app.client.put(app.url("/me/profile")).bearer_auth(token).json(&crate::kyc::profile(72)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(app.client.post(app.url("/kyc/access-token")).bearer_auth(token).send().await.unwrap().status(), 200);

        // The seed-003 user's KYC review, and its move to Completed, arrive at the catch-all.
        let user = signed_up["user_id"].as_str().unwrap().to_owned();
        let completed = |r: &Received| {
            let j = r.json();
            j["type"] == "cip.status_changed" && j["data"]["userId"] == user.as_str() && j["data"]["to"] == "Completed"
        };
        let got = all.until("the seed-003 user completes", |rs| rs.iter().any(completed)).await;
        let prospect_id = prospect["userId"].as_str().unwrap();
        all.until("the seed-002 prospect settles", |rs| rs.iter().any(|r| {
            let j = r.json();
            j["type"] == "cip.status_changed" && j["data"]["userId"] == prospect_id && j["data"]["to"] != "UpgradeInProgress"
        })).await;
        created.until("four users", |rs| rs.len() >= 4).await;
        reviewed.until("one review", |rs| !rs.is_empty()).await;
        // Nothing more is on its way: every queued delivery has been made.
        for _ in 0..200 {
            if crate::helpers::count(app.database_url(), "SELECT COUNT(*) FROM jobs WHERE kind = 'webhook.deliver' AND state <> 'done'").await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let all_got = all.received();
        assert!(all_got.len() >= got.len());

        // Each event once per endpoint; the subscriptions hold.
        for receiver in [&all, &created, &reviewed] {
            let received = receiver.received();
            let mut ids: Vec<&str> = received.iter().map(Received::id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), received.len(), "an event arrived twice at one endpoint");
        }
        let created_got = created.received();
        assert_eq!(created_got.len(), 4);
        assert!(created_got.iter().all(|r| r.event_type() == "user.created"));
        assert_eq!(created_got.iter().filter(|r| r.json()["data"]["externalUserId"] == "ext-1").count(), 1);
        let reviewed_got = reviewed.received();
        assert_eq!(reviewed_got.len(), 1);
        assert_eq!(reviewed_got[0].json()["data"], json!({"reviewAnswer": "GREEN", "userId": user}));
        assert_eq!(all.of_type("user.created").len(), 4);
        assert_eq!(all.of_type("kyc.reviewed").len(), 1);
        assert!(all.of_type("cip.status_changed").len() >= 4);
        let first = all.of_type("cip.status_changed").into_iter().find(|r| r.json()["data"]["userId"] == user.as_str()).unwrap();
        assert_eq!(first.json()["data"]["from"], Value::Null);

        // The documented shape, and nothing personal.
        for r in &all_got {
            let body = r.json();
            let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["data", "timestamp", "type"]);
            assert!(body["data"]["userId"].as_str().unwrap().starts_with("usr:"));
            let text = String::from_utf8(r.body.clone()).unwrap();
            assert!(!text.contains('@') && !text.contains("Hernández") && !text.contains("+52"), "{text}");
            assert!(r.body.len() < 20_000);
            assert_eq!(r.headers["content-type"], "application/json");
            assert_eq!(r.headers["webhook-signature"].split(' ').count(), 1);
        }
        assert_signed(all_ep["secret"].as_str().unwrap(), &all_got);
        assert_signed(created_ep["secret"].as_str().unwrap(), &created_got);
        assert_signed(reviewed_ep["secret"].as_str().unwrap(), &reviewed_got);
        let wrong = verified_by_readme(&[(created_ep["secret"].as_str().unwrap(), &reviewed_got[0])]);
        assert_eq!(wrong, [false], "another endpoint's secret verified");

        // The events API: each event with its delivered attempts.
        let page = app.webhook_events(&key, "?type=kyc.reviewed").await;
        let events = page["data"].as_array().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["id"], reviewed_got[0].id());
        let endpoints: Vec<&str> = events[0]["attempts"].as_array().unwrap().iter()
            .map(|a| { assert_eq!(a["result"], "delivered"); a["endpointId"].as_str().unwrap() }).collect();
        assert_eq!(endpoints.len(), 2);
        assert!(endpoints.contains(&reviewed_ep["id"].as_str().unwrap()) && endpoints.contains(&all_ep["id"].as_str().unwrap()));
        let first_page = app.webhook_events(&key, "?limit=2").await;
        assert_eq!(first_page["hasMore"], true);
        let after = first_page["data"][1]["id"].as_str().unwrap();
        let next = app.webhook_events(&key, &format!("?limit=2&after={after}")).await;
        assert_ne!(next["data"][0]["id"], first_page["data"][0]["id"]);
        assert_problem(app.webhooks_call(reqwest::Method::GET, "/events?type=user.deleted", &key, None).await, 400).await;

        // Another partner sees none of it.
        let other = live_partner(&app).await;
        assert_eq!(app.webhook_events(&other, "").await["data"], json!([]));
        let list: Value = app.webhooks_call(reqwest::Method::GET, "", &other, None).await.json().await.unwrap();
        assert_eq!(list["data"], json!([]));
        let path = format!("/{}", all_ep["id"].as_str().unwrap());
        assert_problem(app.webhooks_call(reqwest::Method::PATCH, &path, &other, Some(json!({"enabled": false}))).await, 404).await;
        assert_problem(app.webhooks_call(reqwest::Method::DELETE, &path, &other, None).await, 404).await;
        let replay = format!("/events/{}/replay", reviewed_got[0].id());
        assert_problem(app.webhooks_call(reqwest::Method::POST, &replay, &other, None).await, 404).await;

        // A replay is the same event again, same webhook-id.
        let response = app.webhooks_call(reqwest::Method::POST, &replay, &key, Some(json!({"endpointId": reviewed_ep["id"]}))).await;
        assert_eq!(response.status(), 202);
        let again = reviewed.until("the replay", |rs| rs.len() == 2).await;
        assert_eq!(again[1].id(), again[0].id());
        assert_eq!(again[1].body, again[0].body);
    }

    async fn a_failed_delivery_is_retried_with_the_same_id(app, configure) {
        let key = app.sandbox.api_key.clone();
        let elsewhere = Receiver::ok().await;
        let flaky = Receiver::start(
            vec![Answer::Status(500), Answer::RetryAfter(503, 1), Answer::Redirect(307, elsewhere.url.clone())],
            Answer::Status(200),
        ).await;
        let endpoint = app.add_endpoint(&key, json!({"url": flaky.url, "events": ["user.created"]})).await;
        app.some_user(1).await;
        let got = flaky.until("four attempts", |rs| rs.len() >= 4).await;
        assert!(got.iter().all(|r| r.id() == got[0].id()), "the webhook-id changed between attempts");
        assert!(got.iter().all(|r| r.body == got[0].body), "the body changed between attempts");
        // Retry-After: 1 was honoured (the schedule here says 0).
        assert!(got[2].at.duration_since(got[1].at) >= Duration::from_millis(950));
        // The redirect was not followed.
        assert!(elsewhere.received().is_empty());
        assert_signed(endpoint["secret"].as_str().unwrap(), &got);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(flaky.received().len(), 4, "delivered more than once after a 200");
        let events = app.webhook_events(&key, "?type=user.created").await;
        let attempts: Vec<(String, Value)> = events["data"][0]["attempts"].as_array().unwrap().iter()
            .map(|a| (a["result"].as_str().unwrap().to_owned(), a["status"].clone())).collect();
        assert_eq!(attempts, [
            ("failed".to_owned(), json!(500)), ("failed".to_owned(), json!(503)),
            ("failed".to_owned(), json!(307)), ("delivered".to_owned(), json!(200)),
        ]);
        let error = events["data"][0]["attempts"][2]["error"].as_str().unwrap();
        assert!(error.contains("redirects are not followed"), "{error}");
    }

    async fn gone_disables_the_endpoint_until_it_is_enabled_again(app, configure) {
        let key = app.sandbox.api_key.clone();
        // The partner's contact address, told when an endpoint is disabled.
        let patch = |body: Value| app.client.patch(app.url("/partner")).header("PartnerApiKey", &key).json(&body).send();
        assert_problem(patch(json!({"contactEmail": "not an address"})).await.unwrap(), 400).await;
        let view: Value = patch(json!({"contactEmail": "ops@partner.example"})).await.unwrap().json().await.unwrap();
        assert_eq!(view["contactEmail"], "ops@partner.example");
        let gone = Receiver::start(vec![Answer::Status(410)], Answer::Status(200)).await;
        let endpoint = app.add_endpoint(&key, json!({"url": gone.url})).await;
        let path = format!("/{}", endpoint["id"].as_str().unwrap());
        app.some_user(1).await;
        gone.until("the first delivery", |rs| rs.len() == 1).await;
        let mut listed = Value::Null;
        for _ in 0..200 {
            listed = app.webhooks_call(reqwest::Method::GET, "", &key, None).await.json().await.unwrap();
            if listed["data"][0]["enabled"] == false {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(listed["data"][0]["enabled"], false);
        assert!(listed["data"][0]["disabledReason"].as_str().unwrap().contains("410"));
        // Its payload is cleared once delivered (a local mail server may take it at once), so
        // the one mail job of this test is the notice.
        let mails = crate::helpers::count(app.database_url(), "SELECT COUNT(*) FROM jobs WHERE kind = 'mail.send'").await;
        assert_eq!(mails, 1, "the partner is told, in the same write");
        // Events while disabled are not sent to it.
        app.some_user(2).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(gone.received().len(), 1);
        let response = app.webhooks_call(reqwest::Method::PATCH, &path, &key, Some(json!({"enabled": true}))).await;
        assert_eq!(response.status(), 200);
        let enabled: Value = response.json().await.unwrap();
        assert_eq!(enabled["enabled"], true);
        assert_eq!(enabled["disabledReason"], Value::Null);
        app.some_user(3).await;
        gone.until("a delivery after re-enabling", |rs| rs.len() == 2).await;
        // What was given up on goes out again on request.
        let response = app.webhooks_call(reqwest::Method::POST, "/replay-failed", &key, Some(json!({"since": "2020-01-01T00:00:00Z"}))).await;
        assert_eq!(response.status(), 202);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["queued"], 1, "the 410'd delivery is the one dead delivery");
        gone.until("the replayed delivery", |rs| rs.len() == 3).await;
        assert_problem(app.webhooks_call(reqwest::Method::POST, "/replay-failed", &key, Some(json!({"since": "yesterday"}))).await, 400).await;
        // Deleted: nothing more, and it is gone from the list.
        assert_eq!(app.webhooks_call(reqwest::Method::DELETE, &path, &key, None).await.status(), 204);
        app.some_user(4).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(gone.received().len(), 3);
        let listed: Value = app.webhooks_call(reqwest::Method::GET, "", &key, None).await.json().await.unwrap();
        assert_eq!(listed["data"], json!([]));
        assert_problem(app.webhooks_call(reqwest::Method::DELETE, &path, &key, None).await, 404).await;
        let audited = crate::helpers::count(app.database_url(),
            "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'webhook_endpoint.%'").await;
        assert_eq!(audited, 3, "create, update and delete are audited");
    }

    async fn a_rotated_secret_signs_beside_the_new_one(app, configure) {
        let key = app.sandbox.api_key.clone();
        let receiver = Receiver::ok().await;
        let endpoint = app.add_endpoint(&key, json!({"url": receiver.url, "events": ["kyc.reviewed"]})).await;
        let old = endpoint["secret"].as_str().unwrap().to_owned();
        let path = format!("/{}", endpoint["id"].as_str().unwrap());
        let response = app.webhooks_call(reqwest::Method::POST, &format!("{path}/rotate-secret"), &key, None).await;
        assert_eq!(response.status(), 200);
        let rotated: Value = response.json().await.unwrap();
        let new = rotated["secret"].as_str().unwrap().to_owned();
        assert_ne!(new, old);
        assert!(rotated["previousSecretExpiresAt"].is_string());
        let response = app.webhooks_call(reqwest::Method::POST, &format!("{path}/test"), &key, None).await;
        assert_eq!(response.status(), 202);
        let got = receiver.until("the test event", |rs| rs.len() == 1).await;
        assert_eq!(got[0].event_type(), "webhook.test");
        assert_eq!(got[0].headers["webhook-signature"].split(' ').count(), 2);
        assert_eq!(verified_by_readme(&[(&old, &got[0]), (&new, &got[0])]), [true, true]);
        let stranger = onboard::domain::webhook::SigningSecret::generate();
        assert_eq!(verified_by_readme(&[(stranger.expose(), &got[0])]), [false]);
        // The secret is sealed at rest.
        let plain = crate::helpers::count(app.database_url(),
            &format!("SELECT COUNT(*) FROM webhook_endpoints WHERE secret = '{new}' OR previous_secret = '{old}'")).await;
        assert_eq!(plain, 0);
        assert!(!serde_json::to_string(&app.webhooks_call(reqwest::Method::GET, "", &key, None).await.json::<Value>().await.unwrap()).unwrap().contains("whsec_"));
    }

    async fn an_endpoint_that_never_answers_does_not_hold_up_another(app, |s: &mut Settings| {
        configure(s);
        s.webhooks.timeout_ms = 4_000;
        s.webhooks.concurrency = 4;
        s.webhooks.per_endpoint_concurrency = 2;
    }) {
        let key = app.sandbox.api_key.clone();
        let (silent, fast) = (Receiver::start(Vec::new(), Answer::Hang).await, Receiver::ok().await);
        app.add_endpoint(&key, json!({"url": silent.url})).await;
        app.add_endpoint(&key, json!({"url": fast.url})).await;
        let started = Instant::now();
        for n in 0..8 {
            app.some_user(n).await;
        }
        fast.until("all eight at the fast endpoint", |rs| rs.len() == 8).await;
        assert!(started.elapsed() < Duration::from_millis(3_500), "the fast endpoint waited on the silent one");
        // The silent one holds at most its share of workers.
        assert!(silent.received().len() <= 2, "{} in flight to one endpoint", silent.received().len());
    }

    async fn live_partners_cannot_reach_internal_addresses(app, |s: &mut Settings| {
        crate::kyc::configure(s);
        s.webhooks.schedule_secs = vec![0; 9];
    }) {
        let key = live_partner(&app).await;
        for url in ["https://127.0.0.1/hooks", "https://10.0.0.1/hooks", "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hooks", "https://[::ffff:127.0.0.1]/hooks", "https://0.0.0.0/"]
        {
            let problem = assert_problem(app.webhooks_call(reqwest::Method::POST, "", &key, Some(json!({"url": url}))).await, 400).await;
            assert_eq!(problem["errors"][0]["field"], "url", "{url}: {problem}");
        }
        // Bad input changes nothing.
        for body in [json!({"url": "http://example.com/hooks"}), json!({"url": "https://example.com", "events": ["user.deleted"]}),
            json!({"url": "https://example.com", "events": []}), json!({"url": "https://example.com", "colour": "red"}),
            json!({"url": 7}), json!({"events": ["user.created"]})]
        {
            assert_problem(app.webhooks_call(reqwest::Method::POST, "", &key, Some(body)).await, 400).await;
        }
        let response = app.client.post(app.url("/partner/webhooks")).header("PartnerApiKey", &key)
            .header("Content-Type", "application/json").body("{\"url\":").send().await.unwrap();
        assert_problem(response, 400).await;
        assert_eq!(crate::helpers::count(app.database_url(), "SELECT COUNT(*) FROM webhook_endpoints").await, 0);

        // A name that resolves to loopback is refused when delivering, before any connection.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("https://localhost:{}/hooks", listener.local_addr().unwrap().port());
        let response = app.webhooks_call(reqwest::Method::POST, "", &key, Some(json!({"url": url}))).await;
        assert_eq!(response.status(), 201);
        let endpoint: Value = response.json().await.unwrap();
        let test = format!("/{}/test", endpoint["id"].as_str().unwrap());
        assert_eq!(app.webhooks_call(reqwest::Method::POST, &test, &key, None).await.status(), 202);
        let mut attempts = Value::Null;
        for _ in 0..200 {
            attempts = app.webhook_events(&key, "").await["data"][0]["attempts"].clone();
            if attempts.as_array().is_some_and(|a| !a.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(attempts[0]["result"], "refused", "{attempts}");
        assert!(attempts[0]["error"].as_str().unwrap().contains("loopback"), "{attempts}");
        assert!(listener.accept().is_err(), "a connection reached the refused address");

        // The sandbox partner may not reach loopback either unless the operator allows it.
        let sandbox = app.sandbox.api_key.clone();
        let problem = assert_problem(app.webhooks_call(reqwest::Method::POST, "", &sandbox, Some(json!({"url": "http://127.0.0.1:9/x"}))).await, 400).await;
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains("loopback"), "{problem}");
        assert_eq!(app.webhooks_call(reqwest::Method::POST, "", &sandbox, Some(json!({"url": "http://10.1.2.3:9/x"}))).await.status(), 201);
    }

    // A store without an application: an application's own sweep would race the test's.
    async fn events_and_their_attempts_are_purged_after_their_retention(store: Store) {
        use onboard::store::pin_unit;
        use onboard::store::webhooks::{self as repo, DeliveryRef, NewAttempt, NewEndpoint};
        let (day, now) = (86_400_000, now_ms());
        let key = NewApiKey::generate(Environment::Sandbox);
        let name = PartnerName::parse("Retention").unwrap();
        let partner =
            store.create_partner(&name, Environment::Sandbox, &key, &NewClient::generate(), now).await.unwrap().id.get();
        let endpoint = NewEndpoint {
            public_id: "ep_retention".into(),
            partner_id: partner,
            url: "https://example.com/hooks".into(),
            description: None,
            events: Some(",webhook.test,".into()),
            secret: vec![1],
            now,
        };
        let endpoint =
            store.write(move |mut tx| pin_unit(async move { repo::insert_endpoint(&mut tx, &endpoint).await })).await;
        let endpoint = endpoint.unwrap().id;
        // Events 40, 35, 31 and 29 days and a minute old, each with an attempt.
        for age in [40 * day, 35 * day, 31 * day, 29 * day, 60_000] {
            let at = now - age;
            let emitted = store.write(move |mut tx| {
                pin_unit(async move { repo::emit(&mut tx, partner, "user.created", None, None, &json!({}), at).await })
            });
            emitted.await.unwrap();
        }
        let events = store.webhook_events(partner, None, None, 10).await.unwrap();
        assert_eq!(events.len(), 5);
        for event in &events {
            let attempt = NewAttempt {
                delivery: DeliveryRef { event: event.id, endpoint },
                attempt: 1,
                at: event.created_at,
                result: "delivered",
                status: Some(204),
                latency_ms: 1,
                response: None,
                error: None,
                next_at: None,
            };
            let recorded =
                store.write(move |mut tx| pin_unit(async move { repo::record_attempt(&mut tx, &attempt).await }));
            recorded.await.unwrap();
        }

        let before = now - 30 * day;
        let batch = store.write(move |mut tx| pin_unit(async move { repo::purge_events(&mut tx, before, 2).await }));
        assert_eq!(batch.await.unwrap(), 2, "one bounded batch");
        let purge = |days, at| onboard::core::webhooks::purge_events(&store, days, at);
        assert_eq!(purge(30, now).await.unwrap(), 1, "the sweep takes the rest");
        assert_eq!(purge(30, now).await.unwrap(), 0);
        assert_eq!(purge(0, now + 1_000 * day).await.unwrap(), 0, "0 keeps them all");
        let left: Vec<i64> = store.webhook_events(partner, None, None, 10).await.unwrap().iter().map(|e| e.id).collect();
        assert_eq!(left, [events[3].id, events[4].id]);
        let attempts = store.webhook_attempts(partner, 0, i64::MAX).await.unwrap();
        assert_eq!(attempts.iter().map(|a| a.event_id).collect::<Vec<_>>(), left, "the attempts went with their events");
    }
}
