//! Seed 003 step 4 end to end: a signed-up user who completes onboarding (KYC through the
//! sandbox simulation) gets an account, reads the tiers, subscribes, and pays the invoice; a
//! declined card leaves it open; racing payers make one charge at a local Stripe that checks
//! every request as Stripe would (Bearer key, form encoding, idempotency keys); scopes and
//! ownership are enforced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use onboard::auth::staff::StaffRole;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_problem};
use crate::kyc::{FakeSumsub, Kyc, configure, profile, staff_token};
use crate::on_both_backends;
use crate::prospects::load_small_list;

const STRIPE_KEY: &str = "sk_test_onboard_0123456789abcdef";
const STRIPE_WEBHOOK_SECRET: &str = "whsec_onboard_test_0123456789";

/// A local Stripe: PaymentIntents and customers, form-encoded with the secret key as Bearer,
/// and Stripe's idempotency (a replayed key answers the first result; the same key with other
/// parameters is a 400 `idempotency_error`). It counts the charges it really made.
#[derive(Clone, Default)]
struct FakeStripe {
    url: String,
    state: Arc<Mutex<StripeState>>,
}

/// What one Idempotency-Key was first sent with (the form), and the answer given.
type FirstUse = (Vec<(String, String)>, u16, Value);
/// A PaymentIntent that took money: id, amount, currency, customer, method, off_session.
type Charge = (String, i64, String, String, String, bool);

#[derive(Default)]
struct StripeState {
    /// Idempotency-Key → (the form as sent, the answer).
    keys: HashMap<String, FirstUse>,
    /// PaymentIntents that took money: (id, amount, currency, customer, method, off_session).
    charges: Vec<Charge>,
    customers: usize,
    refused: Vec<String>,
    /// The next PaymentIntent is answered this late (after it took the money).
    slow_next: Option<Duration>,
    /// PaymentIntents canceled; and those the customer finished (3-D Secure) behind our back.
    canceled: Vec<String>,
    completed: Vec<String>,
}

impl FakeStripe {
    async fn start() -> Self {
        let state = Arc::new(Mutex::new(StripeState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(stripe).with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    fn charges(&self) -> usize {
        self.state.lock().unwrap().charges.len()
    }
}

async fn stripe(
    State(state): State<Arc<Mutex<StripeState>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let refuse = |state: &Arc<Mutex<StripeState>>, status: StatusCode, why: &str| {
        state.lock().unwrap().refused.push(why.to_owned());
        (status, axum::Json(json!({"error": {"type": "invalid_request_error", "message": why}}))).into_response()
    };
    if header("authorization") != format!("Bearer {STRIPE_KEY}") {
        return refuse(&state, StatusCode::UNAUTHORIZED, "Invalid API Key provided");
    }
    if header("content-type") != "application/x-www-form-urlencoded" {
        return refuse(&state, StatusCode::BAD_REQUEST, "bodies are form-encoded");
    }
    let key = header("idempotency-key");
    if key.is_empty() || key.len() > 255 {
        return refuse(&state, StatusCode::BAD_REQUEST, "this test server wants an Idempotency-Key on every POST");
    }
    let form: Vec<(String, String)> = form_urlencoded(&body);
    if let Some((sent, status, answer)) = state.lock().unwrap().keys.get(&key).cloned() {
        if sent != form {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": {"type": "idempotency_error",
                "message": "Keys for idempotent requests can only be used with the same parameters they were first used with."}})))
                .into_response();
        }
        return (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response();
    }
    // Slow enough that racing payers overlap.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let slow = if uri.path() == "/v1/payment_intents" { state.lock().unwrap().slow_next.take() } else { None };
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let (status, answer) = match uri.path() {
        path if path.starts_with("/v1/payment_intents/") && path.ends_with("/cancel") => {
            let id = path.trim_start_matches("/v1/payment_intents/").trim_end_matches("/cancel").to_owned();
            let mut s = state.lock().unwrap();
            if s.completed.contains(&id) {
                (
                    400,
                    json!({"error": {"type": "invalid_request_error", "code": "payment_intent_unexpected_state",
                    "message": "You cannot cancel this PaymentIntent because it has a status of succeeded.",
                    "payment_intent": {"id": id, "status": "succeeded"}}}),
                )
            } else {
                s.canceled.push(id.clone());
                (200, json!({"id": id, "object": "payment_intent", "status": "canceled"}))
            }
        }
        "/v1/customers" => {
            let mut s = state.lock().unwrap();
            s.customers += 1;
            (200, json!({"id": format!("cus_test{}", s.customers), "object": "customer"}))
        }
        "/v1/payment_intents" => {
            let amount: i64 = field("amount").parse().unwrap_or(-1);
            let currency = field("currency");
            assert_eq!(currency, currency.to_ascii_lowercase(), "Stripe currencies are lower case");
            assert_eq!(field("confirm"), "true");
            let id = format!("pi_test{}", uuid::Uuid::new_v4().simple());
            let method = field("payment_method");
            let off_session = field("off_session") == "true";
            match method.as_str() {
                "pm_card_visa" => {
                    state.lock().unwrap().charges.push((
                        id.clone(),
                        amount,
                        currency,
                        field("customer"),
                        method,
                        off_session,
                    ));
                    (200, json!({"id": id, "object": "payment_intent", "status": "succeeded", "amount": amount}))
                }
                "pm_card_authenticationRequired" => (
                    200,
                    json!({"id": id, "object": "payment_intent", "status": "requires_action",
                        "client_secret": format!("{id}_secret_x"), "amount": amount}),
                ),
                "pm_card_chargeDeclined" => (
                    402,
                    json!({"error": {"type": "card_error", "code": "card_declined",
                    "decline_code": "generic_decline", "message": "Your card was declined.",
                    "payment_intent": {"id": id, "status": "requires_payment_method"}}}),
                ),
                _ => (
                    400,
                    json!({"error": {"type": "invalid_request_error", "code": "resource_missing",
                    "param": "payment_method", "message": format!("No such PaymentMethod: '{method}'")}}),
                ),
            }
        }
        _ => (404, json!({"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}})),
    };
    state.lock().unwrap().keys.insert(key, (form, status, answer.clone()));
    if let Some(delay) = slow {
        // The charge is made and its answer kept for the key; the caller has given up by now.
        tokio::time::sleep(delay).await;
    }
    (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
}

fn form_urlencoded(body: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(body).unwrap();
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8().unwrap().into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

struct Billing {
    kyc: Kyc,
}

impl Billing {
    async fn spawn(backend: Backend, stripe_url: Option<&str>) -> Option<Self> {
        Self::spawn_with(backend, stripe_url, |_| {}).await
    }

    async fn spawn_with(
        backend: Backend,
        stripe_url: Option<&str>,
        tweak: impl FnOnce(&mut onboard::config::Settings),
    ) -> Option<Self> {
        let stripe_url = stripe_url.map(str::to_owned);
        let app = TestApp::spawn_with(backend, |s| {
            configure(s);
            if let Some(url) = stripe_url {
                s.payments.stripe_api_base = url;
            }
            tweak(s);
        })
        .await?;
        load_small_list(&app).await;
        Some(Self { kyc: Kyc { app, sumsub: FakeSumsub::start().await } })
    }

    fn app(&self) -> &TestApp {
        &self.kyc.app
    }

    /// A tier of the sandbox partner, through the operator route.
    async fn tier(&self, body: Value) -> Value {
        let token = staff_token(self.app(), StaffRole::Operator).await;
        let path = format!("/admin/partners/{}/plans", self.app().sandbox.partner_id);
        let response =
            self.app().client.post(self.app().url(&path)).bearer_auth(token).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// Signed up, profile in, KYC GREEN through the sandbox: `Completed`. (token, user id)
    async fn completed(&self, n: u32) -> (String, String) {
        let (token, user) = self.kyc.signed_up(&format!("ana.billing{n}@correo.mx")).await;
        assert_eq!(self.kyc.put_profile(&token, &profile(n)).await.status(), 200);
        assert_eq!(self.kyc.kyc_token(&token).await.status(), 200);
        self.kyc.reaches(&token, "Completed", "None").await;
        (token, user)
    }

    async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.app().client.get(self.app().url(path)).bearer_auth(token).send().await.unwrap()
    }

    async fn post(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.app().client.post(self.app().url(path)).bearer_auth(token).json(body).send().await.unwrap()
    }

    async fn pay(&self, token: &str, invoice: &str, method: &str) -> reqwest::Response {
        self.post(token, &format!("/payments/invoices/{invoice}/pay"), &json!({"paymentMethodId": method})).await
    }

    /// The sandbox partner's payments through Stripe (the local one), by the operator route.
    async fn use_stripe(&self) {
        let operator = staff_token(self.app(), StaffRole::Operator).await;
        let path = format!("/admin/partners/{}/payments", self.app().sandbox.partner_id);
        let body = json!({"provider": "stripe", "secretKey": STRIPE_KEY, "webhookSecret": STRIPE_WEBHOOK_SECRET});
        let response =
            self.app().client.put(self.app().url(&path)).bearer_auth(&operator).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }

    /// A `Completed` user subscribed (its primary account) to `tier`: (token, the first invoice).
    async fn subscribed(&self, n: u32, tier: &Value) -> (String, String) {
        let (token, _) = self.completed(n).await;
        let account = self.primary_account(&token).await;
        let body = json!({"accountId": account, "subscriptionDetailsId": tier["subscriptionDetailsId"]});
        let subscription: Value = self.post(&token, "/subscriptions", &body).await.json().await.unwrap();
        (token, subscription["invoiceId"].as_str().unwrap().to_owned())
    }

    async fn first_subscription(&self, token: &str) -> Value {
        self.get(token, "/subscriptions").await.json::<Value>().await.unwrap()["data"][0].clone()
    }

    async fn primary_account(&self, token: &str) -> String {
        let accounts: Value = self.get(token, "/accounts").await.json().await.unwrap();
        accounts["data"][0]["accountId"].as_str().unwrap().to_owned()
    }

    async fn scalar(&self, sql: &str) -> i64 {
        crate::helpers::count(self.app().database_url(), sql).await
    }
}

on_both_backends! {
    async fn the_seed_walks_from_sign_up_to_an_active_subscription(backend: Backend) {
        let Some(b) = Billing::spawn(backend, None).await else { return };
        let tier = b.tier(json!({"name": "Plus", "description": "Cashback and a metal card", "amount": 999,
            "currency": "USD", "interval": "month"})).await;
        assert_eq!((tier["amount"].as_i64(), tier["amountDecimal"].as_str()), (Some(999), Some("9.99")));
        let (token, _) = b.completed(41).await;
        // Completing onboarding opened the account.
        let accounts: Value = b.get(&token, "/accounts").await.json().await.unwrap();
        assert_eq!(accounts["data"].as_array().unwrap().len(), 1, "{accounts}");
        assert_eq!(accounts["data"][0]["primary"], true);
        let account = accounts["data"][0]["accountId"].as_str().unwrap().to_owned();
        assert!(account.starts_with("acc:"));
        assert_eq!(b.get(&token, &format!("/accounts/{account}")).await.status(), 200);
        // Get Subscriptions Info.
        let info: Value = b.get(&token, "/subscriptions/info").await.json().await.unwrap();
        assert_eq!(info["data"][0]["subscriptionDetailsId"], tier["subscriptionDetailsId"]);
        // Start Subscription, with an Idempotency-Key: the replay is the same subscription.
        let body = json!({"accountId": account, "subscriptionDetailsId": tier["subscriptionDetailsId"]});
        let start = || b.app().client.post(b.app().url("/subscriptions")).bearer_auth(&token)
            .header("Idempotency-Key", "start-plus-1").json(&body).send();
        let response = start().await.unwrap();
        assert_eq!(response.status(), 201);
        let subscription: Value = response.json().await.unwrap();
        assert_eq!(subscription["status"], "incomplete");
        let replay = start().await.unwrap();
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        assert_eq!(replay.json::<Value>().await.unwrap(), subscription);
        // A second live subscription of the account to the tier: 409.
        assert_problem(b.post(&token, "/subscriptions", &body).await, 409).await;
        let invoice = subscription["invoiceId"].as_str().unwrap().to_owned();
        // Payment Get or Create: by the invoice, or by the subscription.
        let open: Value = b.get(&token, &format!("/payments/invoices/{invoice}")).await.json().await.unwrap();
        assert_eq!((open["status"].as_str(), open["amountDue"].as_i64(), open["amountPaid"].as_i64()), (Some("open"), Some(999), Some(0)));
        let by_subscription: Value = b.get(&token, &format!("/payments/invoices/{}", subscription["subscriptionId"].as_str().unwrap()))
            .await.json().await.unwrap();
        assert_eq!(by_subscription["invoiceId"], invoice.as_str());
        // A declined card: 402 with the decline, the invoice open, the subscription incomplete.
        let declined = b.pay(&token, &invoice, "pm_card_chargeDeclinedInsufficientFunds").await;
        assert_eq!(declined.status(), 402);
        let problem: Value = declined.json().await.unwrap();
        assert_eq!((problem["code"].as_str(), problem["declineCode"].as_str()), (Some("card_declined"), Some("insufficient_funds")));
        assert_eq!(problem["invoice"]["status"], "open");
        let subscriptions: Value = b.get(&token, "/subscriptions").await.json().await.unwrap();
        assert_eq!(subscriptions["data"][0]["status"], "incomplete");
        // Pay Invoice with a good card: paid, the subscription active.
        let response = b.pay(&token, &invoice, "pm_card_visa").await;
        assert_eq!(response.status(), 200);
        let paid: Value = response.json().await.unwrap();
        assert_eq!((paid["status"].as_str(), paid["amountPaid"].as_i64(), paid["amountRemaining"].as_i64()), (Some("paid"), Some(999), Some(0)));
        let statuses: Vec<&str> = paid["payments"].as_array().unwrap().iter().map(|p| p["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["failed", "succeeded"]);
        let subscriptions: Value = b.get(&token, "/subscriptions").await.json().await.unwrap();
        assert_eq!(subscriptions["data"][0]["status"], "active");
        // Paying a paid invoice answers its payment; nothing more is charged.
        let again: Value = b.pay(&token, &invoice, "pm_card_visa").await.json().await.unwrap();
        assert_eq!(again["payments"], paid["payments"]);
        assert_eq!(b.scalar("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'charge'").await, 1);
        // The ledger is append-only: the database refuses to change it.
        let refused = sqlx_execute(b.app().database_url(), "UPDATE ledger_entries SET amount_minor = 1").await;
        assert!(refused.is_err(), "the ledger was changed");
        // The partner heard every step.
        for kind in ["account.opened", "invoice.payment_failed", "invoice.paid"] {
            assert_eq!(b.scalar(&format!("SELECT COUNT(*) FROM webhook_events WHERE type = '{kind}'")).await, 1, "{kind}");
        }
        assert_eq!(b.scalar("SELECT COUNT(*) FROM webhook_events WHERE type = 'subscription.status_changed'").await, 2);
    }

    async fn accounts_and_invoices_are_their_owners_only(backend: Backend) {
        let Some(b) = Billing::spawn(backend, None).await else { return };
        let tier = b.tier(json!({"name": "Yen", "amount": 500, "currency": "JPY", "interval": "year"})).await;
        assert_eq!(tier["amountDecimal"], "500");
        let (ana, _) = b.completed(42).await;
        // A free tier starts at once: its invoice is paid, with nothing charged.
        let free = b.tier(json!({"name": "Free", "amount": 0, "currency": "USD", "interval": "month"})).await;
        let account = b.primary_account(&ana).await;
        let body = json!({"accountId": account, "subscriptionDetailsId": free["subscriptionDetailsId"]});
        let started: Value = b.post(&ana, "/subscriptions", &body).await.json().await.unwrap();
        assert_eq!(started["status"], "active");
        let invoice: Value = b.get(&ana, &format!("/payments/invoices/{}", started["invoiceId"].as_str().unwrap())).await.json().await.unwrap();
        assert_eq!((invoice["status"].as_str(), invoice["payments"].as_array().map(Vec::len)), (Some("paid"), Some(0)));
        let (bea, _) = b.completed(43).await;
        let account = b.primary_account(&ana).await;
        let body = json!({"accountId": account, "subscriptionDetailsId": tier["subscriptionDetailsId"]});
        let subscription: Value = b.post(&ana, "/subscriptions", &body).await.json().await.unwrap();
        let invoice = subscription["invoiceId"].as_str().unwrap();
        // Bea sees none of Ana's things: 404, as if they did not exist.
        assert_problem(b.get(&bea, &format!("/accounts/{account}")).await, 404).await;
        assert_problem(b.get(&bea, &format!("/payments/invoices/{invoice}")).await, 404).await;
        assert_problem(b.pay(&bea, invoice, "pm_card_visa").await, 404).await;
        assert_problem(b.post(&bea, "/subscriptions", &body).await, 404).await;
        let cancel = format!("/subscriptions/{}/cancel", subscription["subscriptionId"].as_str().unwrap());
        assert_problem(b.post(&bea, &cancel, &json!({})).await, 404).await;
        assert_problem(b.get(&bea, "/accounts/acc:not-an-id").await, 404).await;
        // Bad input: 400 naming the field, nothing written.
        let problem = assert_problem(b.post(&ana, "/subscriptions", &json!({"accountId": "x", "subscriptionDetailsId": "y"})).await, 400).await;
        assert_eq!(problem["errors"][0]["field"], "accountId");
        assert_problem(b.pay(&ana, invoice, "4242424242424242").await, 400).await;
        assert_problem(b.post(&ana, &format!("/payments/invoices/{invoice}/pay"), &json!({"paymentMethodId": 7})).await, 400).await;
        // Scopes: the same session's token with only `profile:read` is 403 insufficient_scope.
        let claims: Value = {
            use base64::Engine;
            let payload = ana.split('.').nth(1).unwrap();
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
        };
        let mut narrow: onboard::auth::end_user::UserClaims = serde_json::from_value(claims).unwrap();
        narrow.scope = "profile:read".into();
        let narrow = b.app().state.keys.sign(&narrow).unwrap();
        for response in [
            b.get(&narrow, "/accounts").await,
            b.get(&narrow, &format!("/accounts/{account}")).await,
            b.post(&narrow, "/accounts", &json!({})).await,
            b.get(&narrow, "/subscriptions/info").await,
            b.post(&narrow, "/subscriptions", &body).await,
            b.get(&narrow, &format!("/payments/invoices/{invoice}")).await,
            b.pay(&narrow, invoice, "pm_card_visa").await,
        ] {
            let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(challenge.contains(r#"error="insufficient_scope""#), "{challenge}");
            assert_problem(response, 403).await;
        }
        // A user whose onboarding is not Completed cannot open an account.
        let (new, _) = b.kyc.signed_up("ana.notyet@correo.mx").await;
        let problem = assert_problem(b.post(&new, "/accounts", &json!({})).await, 409).await;
        assert!(problem["detail"].as_str().unwrap().contains("not Completed"), "{problem}");
        // A Completed user can; canceling now voids the unpaid invoice.
        let response = b.post(&ana, "/accounts", &json!({})).await;
        assert_eq!(response.status(), 201);
        let canceled: Value = b.post(&ana, &cancel, &json!({"atPeriodEnd": false})).await.json().await.unwrap();
        assert_eq!(canceled["status"], "canceled");
        let void: Value = b.get(&ana, &format!("/payments/invoices/{invoice}")).await.json().await.unwrap();
        assert_eq!(void["status"], "void");
        assert_problem(b.pay(&ana, invoice, "pm_card_visa").await, 409).await;
        assert_eq!(b.scalar("SELECT COUNT(*) FROM ledger_entries").await, 0);
    }

    async fn renewals_charge_the_saved_method_and_walk_the_retry_schedule(backend: Backend) {
        use onboard::core::billing::{RenewalReport, renew_due};
        let Some(b) = Billing::spawn(backend, None).await else { return };
        let tier = b.tier(json!({"name": "Mensual", "amount": 2500, "currency": "MXN", "interval": "month"})).await;
        let mut users = Vec::new();
        // One pays with a card that renews; the other with Stripe's test card that attaches
        // and pays on session, then fails every charge made without the customer.
        for (n, method) in [(45, "pm_card_visa"), (46, "pm_card_chargeCustomerFail")] {
            let (token, _) = b.completed(n).await;
            let account = b.primary_account(&token).await;
            let body = json!({"accountId": account, "subscriptionDetailsId": tier["subscriptionDetailsId"]});
            let subscription: Value = b.post(&token, "/subscriptions", &body).await.json().await.unwrap();
            let paid = b.pay(&token, subscription["invoiceId"].as_str().unwrap(), method).await;
            assert_eq!(paid.status(), 200);
            // Paying started the periods (a late first payment is not billed for the wait).
            let subscription = b.first_subscription(&token).await;
            assert_eq!(subscription["status"], "active");
            users.push((token, subscription));
        }
        let ms = |text: &str| {
            let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
            i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap()
        };
        let end = users.iter().map(|(_, s)| ms(s["currentPeriodEnd"].as_str().unwrap())).max().unwrap();
        let (store, payments) = (b.app().store(), &b.app().state.payments);
        const DAY: i64 = 86_400_000;
        // A subscription never paid expires after 23 hours, its invoice void.
        let extra = b.tier(json!({"name": "Extra", "amount": 100, "currency": "MXN", "interval": "month"})).await;
        let account = b.primary_account(&users[0].0).await;
        let body = json!({"accountId": account, "subscriptionDetailsId": extra["subscriptionDetailsId"]});
        let unpaid: Value = b.post(&users[0].0, "/subscriptions", &body).await.json().await.unwrap();
        let started = onboard::domain::now_ms();
        assert_eq!(renew_due(store, payments, started + 22 * 3_600_000).await.unwrap(), RenewalReport::default());
        let report = renew_due(store, payments, started + 23 * 3_600_000 + 1_000).await.unwrap();
        assert_eq!(report, RenewalReport { canceled: 1, ..RenewalReport::default() });
        let void: Value = b.get(&users[0].0, &format!("/payments/invoices/{}", unpaid["invoiceId"].as_str().unwrap())).await.json().await.unwrap();
        assert_eq!(void["status"], "void");
        // The injected clock: nothing is due before the period ends.
        assert_eq!(renew_due(store, payments, end - 60_000).await.unwrap(), RenewalReport::default());
        let report = renew_due(store, payments, end + 1_000).await.unwrap();
        assert_eq!(report, RenewalReport { renewed: 2, charged: 1, failed: 1, canceled: 0 });
        // The good card: the next period, its invoice paid off-session with the saved method.
        let good = b.first_subscription(&users[0].0).await;
        assert_eq!(good["status"], "active");
        assert_eq!(ms(good["currentPeriodStart"].as_str().unwrap()), ms(users[0].1["currentPeriodEnd"].as_str().unwrap()));
        assert_ne!(good["invoiceId"], users[0].1["invoiceId"]);
        let invoice: Value = b.get(&users[0].0, &format!("/payments/invoices/{}", good["invoiceId"].as_str().unwrap())).await.json().await.unwrap();
        assert_eq!((invoice["status"].as_str(), invoice["amountPaid"].as_i64()), (Some("paid"), Some(2500)));
        assert_eq!(invoice["payments"][0]["offSession"], true);
        assert_eq!(invoice["payments"][0]["paymentMethodId"], "pm_card_visa");
        // The failing card: past_due, retried 1, 3 and 5 days into the period, then canceled.
        let bad = b.first_subscription(&users[1].0).await;
        assert_eq!(bad["status"], "past_due");
        assert_eq!(renew_due(store, payments, end + DAY / 2).await.unwrap(), RenewalReport::default());
        for (day, canceled) in [(1, 0), (3, 0), (5, 1)] {
            let report = renew_due(store, payments, end + day * DAY + 1_000).await.unwrap();
            assert_eq!(report, RenewalReport { renewed: 0, charged: 0, failed: 1, canceled }, "day {day}");
        }
        let bad = b.first_subscription(&users[1].0).await;
        assert_eq!(bad["status"], "canceled");
        let invoice: Value = b.get(&users[1].0, &format!("/payments/invoices/{}", bad["invoiceId"].as_str().unwrap())).await.json().await.unwrap();
        assert_eq!((invoice["status"].as_str(), invoice["attempts"].as_i64()), (Some("void"), Some(4)));
        assert_eq!(b.scalar("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'failure' AND off_session = TRUE").await, 4);
        // A sweep again at the same instant changes nothing; the good one renews next month.
        assert_eq!(renew_due(store, payments, end + 5 * DAY + 1_000).await.unwrap(), RenewalReport::default());
        let next_end = ms(good["currentPeriodEnd"].as_str().unwrap());
        let report = renew_due(store, payments, next_end + 1_000).await.unwrap();
        assert_eq!(report, RenewalReport { renewed: 1, charged: 1, failed: 0, canceled: 0 });
        assert_eq!(b.scalar("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'charge'").await, 4);
        // One past_due; two canceled (the dunning's, and the unpaid one that expired).
        for (to, times) in [("past_due", 1), ("canceled", 2)] {
            let sql = format!("SELECT COUNT(*) FROM webhook_events WHERE type = 'subscription.status_changed' AND data LIKE '%\"to\":\"{to}\"%'");
            assert_eq!(b.scalar(&sql).await, times, "{to}");
        }
    }

    async fn a_payment_waiting_on_the_customer_is_settled_by_stripes_webhook(backend: Backend) {
        let stripe = FakeStripe::start().await;
        let Some(b) = Billing::spawn(backend, Some(&stripe.url)).await else { return };
        b.use_stripe().await;
        let partner = b.app().sandbox.partner_id;
        let tier = b.tier(json!({"name": "Plus", "amount": 999, "currency": "EUR", "interval": "month"})).await;
        let (token, invoice) = b.subscribed(47, &tier).await;
        // 3-D Secure: 202 with the client secret the SDK finishes it with.
        let response = b.pay(&token, &invoice, "pm_card_authenticationRequired").await;
        assert_eq!(response.status(), 202);
        let pending: Value = response.json().await.unwrap();
        assert_eq!(pending["status"], "requires_action");
        assert!(pending["clientSecret"].as_str().unwrap().contains("_secret_"));
        assert_eq!(pending["invoice"]["paymentPending"], true);
        let intent = pending["providerReference"].as_str().unwrap().to_owned();
        let hook = format!("/webhooks/payments/stripe/{partner}");
        let send = |body: Vec<u8>, signature: String| {
            b.app().client.post(b.app().url(&hook)).header("Stripe-Signature", signature)
                .header("Content-Type", "application/json").body(body).send()
        };
        let event = |id: &str, intent: &str| serde_json::to_vec(&json!({"id": id, "object": "event",
            "type": "payment_intent.succeeded", "data": {"object": {"id": intent, "object": "payment_intent", "status": "succeeded"}}})).unwrap();
        let now = onboard::domain::now_ms() / 1000;
        let sign = |body: &[u8], at: i64| onboard::payments::stripe::signature_header(STRIPE_WEBHOOK_SECRET, at, body);
        let body = event("evt_1", &intent);
        // Forged, stale, or unsigned: 400, nothing changes.
        let forged = onboard::payments::stripe::signature_header("whsec_someone_else_0000", now, &body);
        assert_problem(send(body.clone(), forged).await.unwrap(), 400).await;
        assert_problem(send(body.clone(), sign(&body, now - 600)).await.unwrap(), 400).await;
        assert_problem(send(body.clone(), String::new()).await.unwrap(), 400).await;
        let still: Value = b.get(&token, &format!("/payments/invoices/{invoice}")).await.json().await.unwrap();
        assert_eq!(still["status"], "open");
        // Genuine: the invoice is paid and the subscription active; a redelivery is a duplicate.
        let answer: Value = send(body.clone(), sign(&body, now)).await.unwrap().json().await.unwrap();
        assert_eq!(answer["effect"], "settled");
        let answer: Value = send(body.clone(), sign(&body, now)).await.unwrap().json().await.unwrap();
        assert_eq!(answer["effect"], "duplicate");
        let other = event("evt_2", "pi_unknown");
        let answer: Value = send(other.clone(), sign(&other, now)).await.unwrap().json().await.unwrap();
        assert_eq!(answer["effect"], "ignored");
        let paid: Value = b.get(&token, &format!("/payments/invoices/{invoice}")).await.json().await.unwrap();
        assert_eq!((paid["status"].as_str(), paid["amountPaid"].as_i64()), (Some("paid"), Some(999)));
        assert_eq!(paid["payments"][0]["providerReference"], intent.as_str());
        assert_eq!(b.first_subscription(&token).await["status"], "active");
        // A partner without Stripe settings takes no Stripe webhooks.
        let elsewhere = b.app().client.post(b.app().url("/webhooks/payments/stripe/999")).header("Stripe-Signature", sign(&body, now))
            .body(body.clone()).send().await.unwrap();
        assert_problem(elsewhere, 404).await;
        // The customer gives up on 3-D Secure and pays with another card: the waiting payment
        // is canceled at Stripe and replaced.
        let (token, invoice) = b.subscribed(50, &tier).await;
        let pending: Value = b.pay(&token, &invoice, "pm_card_authenticationRequired").await.json().await.unwrap();
        let waiting = pending["providerReference"].as_str().unwrap().to_owned();
        let response = b.pay(&token, &invoice, "pm_card_visa").await;
        assert_eq!(response.status(), 200);
        let paid: Value = response.json().await.unwrap();
        let statuses: Vec<&str> = paid["payments"].as_array().unwrap().iter().map(|p| p["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["failed", "succeeded"]);
        assert_eq!(paid["payments"][0]["failureCode"], "payment_intent_canceled");
        assert_eq!(stripe.state.lock().unwrap().canceled, [waiting]);
        // The customer finished 3-D Secure just before another card was tried: the cancel comes
        // too late, the money taken pays the invoice, and no second charge is made.
        let (token, invoice) = b.subscribed(51, &tier).await;
        let pending: Value = b.pay(&token, &invoice, "pm_card_authenticationRequired").await.json().await.unwrap();
        let finished = pending["providerReference"].as_str().unwrap().to_owned();
        stripe.state.lock().unwrap().completed.push(finished.clone());
        let charges = stripe.charges();
        let response = b.pay(&token, &invoice, "pm_card_visa").await;
        assert_eq!(response.status(), 200);
        let paid: Value = response.json().await.unwrap();
        assert_eq!(paid["payments"].as_array().unwrap().len(), 1);
        assert_eq!(paid["payments"][0]["providerReference"], finished.as_str());
        assert_eq!(stripe.charges(), charges);
    }

    async fn a_charge_whose_answer_was_lost_is_finished_with_the_same_key(backend: Backend) {
        let stripe = FakeStripe::start().await;
        let Some(b) = Billing::spawn_with(backend, Some(&stripe.url), |s| s.payments.timeout_secs = 1).await else { return };
        b.use_stripe().await;
        let tier = b.tier(json!({"name": "Plus", "amount": 999, "currency": "USD", "interval": "month"})).await;
        let (token, invoice) = b.subscribed(48, &tier).await;
        // Stripe charges but the answer comes after the client gave up: 502, nothing recorded.
        stripe.state.lock().unwrap().slow_next = Some(Duration::from_millis(1_500));
        assert_problem(b.pay(&token, &invoice, "pm_card_visa").await, 502).await;
        assert_eq!(stripe.charges(), 1);
        let open: Value = b.get(&token, &format!("/payments/invoices/{invoice}")).await.json().await.unwrap();
        assert_eq!((open["status"].as_str(), open["paymentPending"].as_bool()), (Some("open"), Some(true)));
        // The retry (even with another card) finishes that attempt with its key and parameters:
        // Stripe replays the first answer, and the money is recorded once.
        let response = b.pay(&token, &invoice, "pm_card_mastercard").await;
        assert_eq!(response.status(), 200);
        let paid: Value = response.json().await.unwrap();
        assert_eq!((paid["status"].as_str(), paid["amountPaid"].as_i64()), (Some("paid"), Some(999)));
        assert_eq!(paid["payments"][0]["paymentMethodId"], "pm_card_visa");
        assert_eq!(stripe.charges(), 1);
        // Nobody comes back: the sweep finishes the lost attempt before the unpaid subscription
        // could expire, and the money taken is recorded.
        let (token, invoice) = b.subscribed(49, &tier).await;
        stripe.state.lock().unwrap().slow_next = Some(Duration::from_millis(1_500));
        assert_problem(b.pay(&token, &invoice, "pm_card_visa").await, 502).await;
        let later = onboard::domain::now_ms() + onboard::core::billing::INCOMPLETE_EXPIRES_MS + 1_000;
        let report = onboard::core::billing::renew_due(b.app().store(), &b.app().state.payments, later).await.unwrap();
        assert_eq!((report.charged, report.canceled), (1, 0));
        let paid: Value = b.get(&token, &format!("/payments/invoices/{invoice}")).await.json().await.unwrap();
        assert_eq!(paid["status"], "paid");
        assert_eq!(b.first_subscription(&token).await["status"], "active");
        assert_eq!(stripe.charges(), 2);
        assert!(stripe.state.lock().unwrap().refused.is_empty());
    }

    async fn fifty_concurrent_pays_make_one_charge_at_stripe(backend: Backend) {
        let stripe = FakeStripe::start().await;
        let Some(b) = Billing::spawn(backend, Some(&stripe.url)).await else { return };
        let operator = staff_token(b.app(), StaffRole::Operator).await;
        let path = format!("/admin/partners/{}/payments", b.app().sandbox.partner_id);
        let settings = |body: Value| b.app().client.put(b.app().url(&path)).bearer_auth(&operator).json(&body).send();
        // A key that is not Stripe's is refused before anything is stored.
        let problem = assert_problem(settings(json!({"provider": "stripe", "secretKey": "nope", "webhookSecret": STRIPE_WEBHOOK_SECRET})).await.unwrap(), 400).await;
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains("sk_"), "{problem}");
        let response = settings(json!({"provider": "stripe", "secretKey": STRIPE_KEY, "webhookSecret": STRIPE_WEBHOOK_SECRET})).await.unwrap();
        assert_eq!(response.status(), 200);
        let tier = b.tier(json!({"name": "Dinar", "amount": 1250, "currency": "KWD", "interval": "month"})).await;
        let (token, invoice) = b.subscribed(44, &tier).await;
        // Declined at Stripe (402 card_error): 402 here, nothing charged.
        let declined = b.pay(&token, &invoice, "pm_card_chargeDeclined").await;
        assert_eq!(declined.status(), 402);
        assert_eq!(declined.json::<Value>().await.unwrap()["declineCode"], "generic_decline");
        // Fifty payers at once: one charge at Stripe, every payer told the invoice is paid.
        let mut pays = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let request = b.app().client.post(b.app().url(&format!("/payments/invoices/{invoice}/pay")))
                .bearer_auth(&token).json(&json!({"paymentMethodId": "pm_card_visa"}));
            pays.spawn(async move { request.send().await.unwrap() });
        }
        while let Some(response) = pays.join_next().await {
            let response = response.unwrap();
            assert_eq!(response.status(), 200);
            let paid: Value = response.json().await.unwrap();
            assert_eq!(paid["status"], "paid");
            assert_eq!(paid["amountPaid"], 1250);
        }
        assert_eq!(stripe.charges(), 1);
        let (charge, customers, refused) = {
            let state = stripe.state.lock().unwrap();
            (state.charges[0].clone(), state.customers, state.refused.clone())
        };
        assert!(refused.is_empty(), "{refused:?}");
        let (_, amount, currency, customer, method, off_session) = charge;
        assert_eq!((amount, currency.as_str(), method.as_str(), off_session), (1250, "kwd", "pm_card_visa", false));
        assert_eq!(customers, 1);
        assert_eq!(b.scalar("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'charge'").await, 1);
        // The customer and the method are kept for renewals; the secret key is sealed at rest.
        assert_eq!(b.scalar(&format!("SELECT COUNT(*) FROM payment_customers WHERE customer_id = '{customer}' AND payment_method = 'pm_card_visa'")).await, 1);
        let subscriptions: Value = b.get(&token, "/subscriptions").await.json().await.unwrap();
        assert_eq!(subscriptions["data"][0]["status"], "active");
        // The renewal charges the saved method on the same customer, off-session, at Stripe.
        let end = time::OffsetDateTime::parse(
            subscriptions["data"][0]["currentPeriodEnd"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let end = i64::try_from(end.unix_timestamp_nanos() / 1_000_000).unwrap();
        let report = onboard::core::billing::renew_due(b.app().store(), &b.app().state.payments, end + 1_000).await.unwrap();
        assert_eq!((report.renewed, report.charged), (1, 1));
        let renewal = stripe.state.lock().unwrap().charges[1].clone();
        assert_eq!((renewal.1, renewal.3.as_str(), renewal.4.as_str(), renewal.5), (1250, customer.as_str(), "pm_card_visa", true));
        assert_eq!(stripe.charges(), 2);
    }
}

/// Runs a statement on the app's database directly (as an attacker with SQL access would).
async fn sqlx_execute(url: &str, sql: &'static str) -> Result<u64, sqlx::Error> {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query(sql).execute(&mut conn).await.map(|r| r.rows_affected())
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query(sql).execute(&mut conn).await.map(|r| r.rows_affected())
    }
}
