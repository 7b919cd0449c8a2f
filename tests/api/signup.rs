//! Seed 003: two-step sign-up with an e-mailed code, the password policy, end-user tokens
//! (refresh rotation, reuse detection, revocation), and the abuse limits. Mail goes to a real
//! SMTP conversation with a server started by the test, through the production client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use onboard::auth::credentials::{NewApiKey, NewClient};
use onboard::config::Settings;
use onboard::domain::{Environment, PartnerName, now_ms};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::{Backend, TestApp, assert_problem, count};
use crate::on_both_backends;

/// A minimal SMTP server: accepts every message and keeps its text.
#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Self { port, messages: Arc::clone(&messages) };
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let messages = Arc::clone(&messages);
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 sink ESMTP\r\n").await.ok();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 sink\r\n",
                            "DATA" => {
                                write.write_all(b"354 end with .\r\n").await.ok();
                                let mut message = String::new();
                                while let Ok(Some(line)) = lines.next_line().await {
                                    if line == "." {
                                        break;
                                    }
                                    message.push_str(&line);
                                    message.push('\n');
                                }
                                messages.lock().unwrap().push(message);
                                b"250 queued\r\n"
                            }
                            "QUIT" => {
                                write.write_all(b"221 bye\r\n").await.ok();
                                return;
                            }
                            _ => b"250 OK\r\n",
                        };
                        if write.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        sink
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages sent to `to` so far, waiting (bounded) until there are at least `count`.
    pub async fn messages_to(&self, to: &str, count: usize) -> Vec<String> {
        for _ in 0..200 {
            let found: Vec<String> =
                self.messages.lock().unwrap().iter().filter(|m| m.contains(&format!("To: {to}"))).cloned().collect();
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("fewer than {count} messages to {to} arrived: {:?}", self.messages.lock().unwrap());
    }
}

/// The code in a sign-up message.
fn code_in(message: &str) -> String {
    let at = message.find("Your confirmation code is ").expect("a code message") + "Your confirmation code is ".len();
    message[at..].chars().take_while(char::is_ascii_digit).collect()
}

/// Cheap hashing (tests are not benchmarks), mail to `sink`, client IPs from X-Forwarded-For.
fn configure(sink: &SmtpSink, settings: &mut Settings) {
    settings.password.memory_kib = 8 * 1024;
    settings.password.iterations = 1;
    settings.password.workers = 2;
    settings.mail.url = sink.url();
    settings.mail.timeout_secs = 5;
    settings.jobs.backoff_base_ms = 50;
    settings.signup.trust_forwarded_for = true;
}

struct Signup {
    app: TestApp,
    sink: SmtpSink,
}

impl Signup {
    async fn spawn(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<Self> {
        let sink = SmtpSink::start().await;
        let app = TestApp::spawn_with(backend, |s| {
            configure(&sink, s);
            tweak(s);
        })
        .await?;
        Some(Self { app, sink })
    }

    fn sandbox(&self) -> i64 {
        self.app.sandbox.partner_id
    }

    async fn live_partner(&self) -> i64 {
        let name = PartnerName::parse("Acme Live").unwrap();
        let key = NewApiKey::generate(Environment::Live);
        let partner = self
            .app
            .store()
            .create_partner(&name, Environment::Live, &key, &NewClient::generate(), now_ms())
            .await
            .unwrap();
        partner.id.get()
    }

    async fn post(&self, partner: Option<&str>, ip: &str, body: &Value) -> reqwest::Response {
        let mut request = self.app.client.post(self.app.url("/users")).header("X-Forwarded-For", ip).json(body);
        if let Some(partner) = partner {
            request = request.header("partnerId", partner);
        }
        request.send().await.unwrap()
    }

    async fn step(&self, partner: i64, body: &Value) -> reqwest::Response {
        self.post(Some(&partner.to_string()), "10.0.0.1", body).await
    }

    async fn start(&self, partner: i64, email: &str, password: &str) {
        let response = self.step(partner, &json!({"userType": "CUSTOMER", "email": email, "password": password})).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap(), json!({}));
    }

    async fn confirm(&self, partner: i64, email: &str, password: &str, code: &str) -> reqwest::Response {
        self.step(
            partner,
            &json!({"userType": "CUSTOMER", "email": email, "password": password, "emailConfirmCode": code}),
        )
        .await
    }

    /// Steps 1 and 2 on the sandbox partner: the token response.
    async fn signed_up(&self, email: &str) -> Value {
        self.start(self.sandbox(), email, "A9#bL8@z").await;
        let response = self.confirm(self.sandbox(), email, "A9#bL8@z", "12345").await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn me(&self, token: &str) -> reqwest::Response {
        self.app.client.get(self.app.url("/me")).bearer_auth(token).send().await.unwrap()
    }

    async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.app.post_token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)], None).await
    }

    async fn pending_rows(&self) -> i64 {
        let url = self.app.database_url().to_owned();
        count(&url, "SELECT COUNT(*) FROM pending_signups").await
    }
}

fn messages(problem: &Value, field: &str) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["field"] == field)
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

on_both_backends! {
    async fn the_seeds_examples_on_a_sandbox_partner(backend: Backend) {
        let Some(t) = Signup::spawn(backend, |_| {}).await else { return };
        let partner = t.sandbox();
        // Step 1, the seed's request: `{}`.
        let response = t.step(partner, &json!({"userType": "CUSTOMER", "email": "user@example.com", "password": "A9#bL8@z"})).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "{}");
        // Sandbox codes are mailed too, and are the seed's fixed 12345.
        let mail = t.sink.messages_to("user@example.com", 1).await;
        assert_eq!(code_in(&mail[0]), "12345");

        // Step 2, the seed's request: the seed's token response, field for field.
        let response = t.confirm(partner, "user@example.com", "A9#bL8@z", "12345").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body.as_object().unwrap().len(), 6, "{text}");
        let order: Vec<usize> = ["access_token", "token_type", "refresh_token", "scope", "expires_in", "user_id"]
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("{k} missing: {text}")))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "the seed's field order: {text}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 86400);
        assert!(body["scope"].as_str().unwrap().starts_with("accounts:create accounts:read accounts:show"));
        let user_id = body["user_id"].as_str().unwrap().to_owned();
        assert!(user_id.starts_with("usr:") && user_id.len() == 40, "{user_id}");

        // The access token is the user's: GET /me.
        let me: Value = t.me(body["access_token"].as_str().unwrap()).await.json().await.unwrap();
        assert_eq!(me["userId"], user_id.as_str());
        assert_eq!(me["email"], "user@example.com");
        assert_eq!(me["userType"], "CUSTOMER");
        assert_eq!(me["partnerId"], partner);
        // …and not a partner's: partner routes refuse it.
        let response = t.app.get_partner_with_bearer(body["access_token"].as_str().unwrap()).await;
        assert_eq!(response.status(), 401);

        // Replaying the completed step 2 signs in the same user; no second user.
        let again: Value = t.confirm(partner, "USER@example.com", "A9#bL8@z", "12345").await.json().await.unwrap();
        assert_eq!(again["user_id"], user_id.as_str());
        assert_ne!(again["refresh_token"], body["refresh_token"]);
        assert_eq!(t.app.store().count_users(onboard::domain::PartnerId::new(t.sandbox()).unwrap()).await.unwrap(), 1);
    }

    async fn a_live_partners_user_reads_the_code_from_the_real_mail(backend: Backend) {
        let Some(t) = Signup::spawn(backend, |_| {}).await else { return };
        let partner = t.live_partner().await;
        t.start(partner, "Maria.Lopez@Example.org", "Qz7#tRw2!pL").await;
        let mail = t.sink.messages_to("Maria.Lopez@Example.org", 1).await;
        assert!(mail[0].contains("Acme Live"), "{}", mail[0]);
        let code = code_in(&mail[0]);
        assert_eq!(code.len(), 5);
        // The sandbox code means nothing to a live partner (unless it happens to be the code).
        if code != "12345" {
            let response = t.confirm(partner, "maria.lopez@example.org", "Qz7#tRw2!pL", "12345").await;
            let problem = assert_problem(response, 400).await;
            assert_eq!(messages(&problem, "emailConfirmCode").len(), 1);
        }
        let response = t.confirm(partner, "maria.lopez@example.org", "Qz7#tRw2!pL", &code).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let me: Value = t.me(body["access_token"].as_str().unwrap()).await.json().await.unwrap();
        // The address keeps the spelling of step 1.
        assert_eq!(me["email"], "Maria.Lopez@Example.org");
        // A delivered code does not stay in the job table.
        let url = t.app.database_url().to_owned();
        assert_eq!(count(&url, "SELECT COUNT(*) FROM jobs WHERE kind = 'mail.send' AND payload LIKE '%code%'").await, 0);
    }

    async fn every_password_rule_is_named_and_nothing_is_written(backend: Backend) {
        let Some(t) = Signup::spawn(backend, |_| {}).await else { return };
        let cases: [(&str, &[&str]); 8] = [
            ("Ab1!", &["must be 8 to 32 characters long"]),
            ("Ab1!Ab1!Ab1!Ab1!Ab1!Ab1!Ab1!Ab1!x", &["must be 8 to 32 characters long"]),
            ("QWERTY12!X", &["must contain a lowercase Latin letter (a-z)"]),
            ("qwzxrt12!x", &["must contain an uppercase Latin letter (A-Z)"]),
            ("Qwzxrtyu!x", &["must contain a digit (0-9)"]),
            ("Qwzxrt12xY", &["must contain a symbol such as ! @ # $"]),
            (
                "abc",
                &[
                    "must be 8 to 32 characters long",
                    "must contain an uppercase Latin letter (A-Z)",
                    "must contain a digit (0-9)",
                    "must contain a symbol such as ! @ # $",
                ],
            ),
            ("Password1!", &["is too common or too easy to guess"]),
        ];
        for (password, expected) in cases {
            let response = t.step(t.sandbox(), &json!({"email": "rules@example.com", "password": password})).await;
            let problem = assert_problem(response, 400).await;
            let got = messages(&problem, "password");
            assert_eq!(got.len(), expected.len(), "{password}: {got:?}");
            for (got, expected) in got.iter().zip(expected) {
                assert!(got.starts_with(expected), "{password}: {got} vs {expected}");
            }
        }
        // Built from the address: refused too.
        let response = t.step(t.sandbox(), &json!({"email": "marisol@example.com", "password": "Marisol#2024"})).await;
        let problem = assert_problem(response, 400).await;
        assert!(messages(&problem, "password")[0].contains("e-mail"), "{problem}");
        assert_eq!(t.pending_rows().await, 0);
        assert_eq!(t.app.store().count_users(onboard::domain::PartnerId::new(t.sandbox()).unwrap()).await.unwrap(), 0);
    }

    async fn bad_fields_and_headers_are_clear_400s_and_404s(backend: Backend) {
        let Some(t) = Signup::spawn(backend, |_| {}).await else { return };
        let body = json!({"email": "a@example.com", "password": "A9#bL8@z"});
        let problem = assert_problem(t.post(None, "10.0.0.1", &body).await, 400).await;
        assert_eq!(problem["errors"][0]["field"], "partnerId");
        for bad in ["abc", "3000000000", "1.5", ""] {
            let problem = assert_problem(t.post(Some(bad), "10.0.0.1", &body).await, 400).await;
            assert_eq!(problem["errors"][0]["message"], "must be an int32", "{bad}");
        }
        assert_problem(t.post(Some("999999"), "10.0.0.1", &body).await, 404).await;
        assert_problem(t.post(Some("0"), "10.0.0.1", &body).await, 404).await;

        let problem = assert_problem(
            t.step(t.sandbox(), &json!({"email": "nope", "password": 7, "userType": "ADMIN", "emailConfirmCode": "12a45", "extra": true})).await,
            400,
        )
        .await;
        let fields: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["extra", "email", "password", "userType", "emailConfirmCode"]);
        let response = t
            .app
            .client
            .post(t.app.url("/users"))
            .header("partnerId", t.sandbox().to_string())
            .header("content-type", "application/json")
            .body("{\"email\": ")
            .send()
            .await
            .unwrap();
        assert_problem(response, 400).await;
        assert_eq!(t.pending_rows().await, 0);
    }

    async fn wrong_expired_and_exhausted_codes(backend: Backend) {
        let Some(t) = Signup::spawn(backend, |s| {
            s.signup.resend_interval_secs = 0;
            s.signup.code_ttl_secs = 2;
        })
        .await else { return };
        let partner = t.live_partner().await;
        let email = "codes@example.org";
        let password = "Vb4%kLm9qZ";

        // Wrong codes count; the fifth locks the sign-up, even against the right code.
        t.start(partner, email, password).await;
        let code = code_in(&t.sink.messages_to(email, 1).await[0]);
        let wrong = if code == "00000" { "11111" } else { "00000" };
        for attempt in 1..=5 {
            let problem = assert_problem(t.confirm(partner, email, password, wrong).await, 400).await;
            let message = &messages(&problem, "emailConfirmCode")[0];
            if attempt < 5 {
                assert!(message.starts_with("is not the code"), "{message}");
            } else {
                assert!(message.contains("too many times"), "{message}");
            }
        }
        let problem = assert_problem(t.confirm(partner, email, password, &code).await, 400).await;
        assert!(messages(&problem, "emailConfirmCode")[0].contains("too many times"));

        // A new step 1 unlocks it with a new code; a wrong password counts as an attempt.
        t.start(partner, email, password).await;
        let code = code_in(&t.sink.messages_to(email, 2).await[1]);
        let problem = assert_problem(t.confirm(partner, email, "Other#Pass9", &code).await, 400).await;
        assert_eq!(messages(&problem, "password"), ["is not the password given in the first step"]);

        // Expired after `code_ttl_secs`.
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let problem = assert_problem(t.confirm(partner, email, password, &code).await, 400).await;
        assert!(messages(&problem, "emailConfirmCode")[0].contains("expired"));
        assert_eq!(t.app.store().count_users(onboard::domain::PartnerId::new(partner).unwrap()).await.unwrap(), 0);

        // Never asked for: the same answer as a wrong code.
        let problem = assert_problem(t.confirm(partner, "never@example.org", password, "12345").await, 400).await;
        assert!(messages(&problem, "emailConfirmCode")[0].starts_with("is not the code"));
    }

    async fn step_one_does_not_reveal_existing_accounts(backend: Backend) {
        let Some(t) = Signup::spawn(backend, |s| s.signup.resend_interval_secs = 0).await else { return };
        t.signed_up("taken@example.com").await;
        t.sink.messages_to("taken@example.com", 1).await;

        // The same answer for a registered and an unregistered address.
        let taken = t.step(t.sandbox(), &json!({"email": "Taken@example.com", "password": "Nq8&wErt5"})).await;
        let fresh = t.step(t.sandbox(), &json!({"email": "fresh@example.com", "password": "Nq8&wErt5"})).await;
        assert_eq!((taken.status().as_u16(), fresh.status().as_u16()), (200, 200));
        assert_eq!(taken.text().await.unwrap(), fresh.text().await.unwrap());

        // The owner learns of the attempt by mail, with no code in it.
        let mails = t.sink.messages_to("Taken@example.com", 1).await;
        assert!(mails[0].contains("already exists") && !mails[0].contains("confirmation code"), "{}", mails[0]);
        // Even the sandbox code cannot complete it: the same answer as a wrong code.
        let problem = assert_problem(t.confirm(t.sandbox(), "taken@example.com", "Nq8&wErt5", "12345").await, 400).await;
        assert!(messages(&problem, "emailConfirmCode")[0].starts_with("is not the code"));
        assert_eq!(t.app.store().count_users(onboard::domain::PartnerId::new(t.sandbox()).unwrap()).await.unwrap(), 1);
    }

    async fn an_address_registered_elsewhere_between_the_steps_is_a_409_and_no_second_account(backend: Backend) {
        let Some(t) = Signup::spawn(backend, |_| {}).await else { return };
        t.start(t.sandbox(), "ana.7@correo.mx", "A9#bL8@z").await;
        // Seed 002 registers the same address (spelled differently) for the same partner.
        let body = crate::prospects::prospect(7, json!({"email": "Ana.7@Correo.mx"}));
        let registered = t
            .app
            .client
            .post(t.app.url("/register-user-v2"))
            .header("PartnerApiKey", &t.app.sandbox.api_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 200);
        let partner = onboard::domain::PartnerId::new(t.sandbox()).unwrap();
        let users = t.app.store().count_users(partner).await.unwrap();

        let problem = assert_problem(t.confirm(t.sandbox(), "ana.7@correo.mx", "A9#bL8@z", "12345").await, 409).await;
        assert!(problem["detail"].as_str().unwrap().contains("already exists"), "{problem}");
        assert_eq!(t.app.store().count_users(partner).await.unwrap(), users, "no second account");
    }

    async fn refresh_tokens_rotate_and_reuse_revokes_the_family(backend: Backend) {
        let Some(t) = Signup::spawn(backend, |_| {}).await else { return };
        let first = t.signed_up("rotate@example.com").await;
        let old_refresh = first["refresh_token"].as_str().unwrap();

        let response = t.refresh(old_refresh).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let second: Value = response.json().await.unwrap();
        assert_eq!(second["user_id"], first["user_id"]);
        assert_eq!(second["token_type"], "Bearer");
        assert_ne!(second["refresh_token"], first["refresh_token"]);
        assert_eq!(t.me(second["access_token"].as_str().unwrap()).await.status(), 200);

        // The rotated-out token again: reuse. The whole family dies, access tokens included.
        let response = t.refresh(old_refresh).await;
        assert_eq!(response.status(), 400);
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_grant");
        assert_eq!(t.refresh(second["refresh_token"].as_str().unwrap()).await.status(), 400);
        assert_eq!(t.me(second["access_token"].as_str().unwrap()).await.status(), 401);
        assert_eq!(t.me(first["access_token"].as_str().unwrap()).await.status(), 401);

        // A forged secret with a real id neither rotates nor burns the token.
        let fresh = t.confirm(t.sandbox(), "rotate@example.com", "A9#bL8@z", "12345").await.json::<Value>().await.unwrap();
        let real = fresh["refresh_token"].as_str().unwrap();
        let (prefix, _) = real.rsplit_once('_').unwrap();
        let forged = format!("{prefix}_{}", "A".repeat(43));
        assert_eq!(t.refresh(&forged).await.status(), 400);
        for garbage in ["", "nope", "ort_x_y"] {
            assert_eq!(t.refresh(garbage).await.status(), 400, "{garbage:?}");
        }
        assert_eq!(t.refresh(real).await.status(), 200, "the real token still works");
    }

    async fn revocation_ends_the_session(backend: Backend) {
        let Some(t) = Signup::spawn(backend, |_| {}).await else { return };
        let session = t.signed_up("revoke@example.com").await;
        let other = t.confirm(t.sandbox(), "revoke@example.com", "A9#bL8@z", "12345").await.json::<Value>().await.unwrap();
        let revoke = |token: String| {
            let t = &t;
            async move { t.app.client.post(t.app.url("/oauth/revoke")).form(&[("token", token)]).send().await.unwrap() }
        };
        // By refresh token: its access tokens stop working, another session does not.
        assert_eq!(revoke(session["refresh_token"].as_str().unwrap().to_owned()).await.status(), 200);
        assert_eq!(t.me(session["access_token"].as_str().unwrap()).await.status(), 401);
        assert_eq!(t.refresh(session["refresh_token"].as_str().unwrap()).await.status(), 400);
        assert_eq!(t.me(other["access_token"].as_str().unwrap()).await.status(), 200);
        // By access token.
        assert_eq!(revoke(other["access_token"].as_str().unwrap().to_owned()).await.status(), 200);
        assert_eq!(t.me(other["access_token"].as_str().unwrap()).await.status(), 401);
        assert_eq!(t.refresh(other["refresh_token"].as_str().unwrap()).await.status(), 400);
        // Unknown tokens: 200 all the same (RFC 7009 §2.2); no token: 400.
        assert_eq!(revoke("whatever".into()).await.status(), 200);
        let response = t.app.client.post(t.app.url("/oauth/revoke")).form(&[("token_type_hint", "refresh_token")]).send().await.unwrap();
        assert_eq!(response.status(), 400);
        // No token, or a garbage one, at /me.
        assert_eq!(t.app.get("/me").await.status(), 401);
        assert_eq!(t.me("not.a.jwt").await.status(), 401);
    }

    async fn rate_limits_are_per_ip_per_address_and_resends_are_throttled(backend: Backend) {
        let Some(t) = Signup::spawn(backend, |s| {
            s.signup.per_ip_per_minute = 3;
            s.signup.per_email_per_minute = 4;
        })
        .await else { return };
        let partner = t.sandbox().to_string();
        let body = |email: &str| json!({"email": email, "password": "Hj5^tYu8op"});

        // One address's quota: the 4th request from 10.1.1.1 is refused, others are not.
        for n in 0..3 {
            let response = t.post(Some(&partner), "10.1.1.1", &body(&format!("ip{n}@example.com"))).await;
            assert_eq!(response.status(), 200);
        }
        let response = t.post(Some(&partner), "10.1.1.1", &body("ip3@example.com")).await;
        assert_eq!(response.status(), 429);
        let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
        assert_problem(response, 429).await;
        assert_eq!(t.post(Some(&partner), "10.1.1.2", &body("ip3@example.com")).await.status(), 200);

        // A second code to one address within the resend interval: 429 with Retry-After.
        let response = t.post(Some(&partner), "10.1.1.3", &body("ip3@example.com")).await;
        assert_eq!(response.status(), 429);
        assert!(response.headers().contains_key("retry-after"));
        // Per address: wrong codes for it from many IPs run out its quota, not others'.
        for n in 0..2 {
            let response = t.post(Some(&partner), &format!("10.2.0.{n}"), &json!({"email": "ip3@example.com", "password": "x", "emailConfirmCode": "99999"})).await;
            assert_eq!(response.status(), 400);
        }
        let response = t.post(Some(&partner), "10.2.0.9", &json!({"email": "ip3@example.com", "password": "x", "emailConfirmCode": "99999"})).await;
        assert_eq!(response.status(), 429);
        assert_eq!(t.post(Some(&partner), "10.2.0.9", &body("ip9@example.com")).await.status(), 200);
    }

    async fn a_full_hashing_queue_answers_503_and_other_routes_keep_working(backend: Backend) {
        let Some(t) = Signup::spawn(backend, |s| {
            s.password.memory_kib = 64 * 1024;
            s.password.iterations = 3;
            s.password.workers = 1;
            s.password.queue = 1;
            s.signup.per_ip_per_minute = 1000;
        })
        .await else { return };
        let partner = t.sandbox().to_string();
        let mut requests = tokio::task::JoinSet::new();
        for n in 0..12 {
            let (client, url, partner) = (t.app.client.clone(), t.app.url("/users"), partner.clone());
            requests.spawn(async move {
                client
                    .post(url)
                    .header("partnerId", partner)
                    .header("X-Forwarded-For", format!("10.3.0.{n}"))
                    .json(&json!({"email": format!("busy{n}@example.com"), "password": "Hj5^tYu8op"}))
                    .send()
                    .await
                    .unwrap()
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(t.app.get("/healthz").await.status(), 200);
        let responses = requests.join_all().await;
        let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
        assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
        assert!(statuses.contains(&503) && statuses.contains(&200), "{statuses:?}");
        let busy = responses.into_iter().find(|r| r.status() == 503).unwrap();
        assert_eq!(busy.headers()["retry-after"], "1");
    }
}
