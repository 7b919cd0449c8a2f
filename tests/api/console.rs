//! The staff console (`/admin/ui/`) as a browser without scripts meets it: sessions, form
//! tokens, roles, holds, escaping — on SQLite and PostgreSQL. The browser walk-through with
//! screenshots is `tests/browser/console.mjs`.

use std::collections::BTreeMap;

use onboard::auth::staff::{NewStaffToken, StaffRole};
use onboard::core::onboarding::CaseDecision;
use onboard::domain::now_ms;
use onboard::store::NewJob;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::helpers::{Backend, TestApp, count, tool_installed};
use crate::on_both_backends;
use crate::prospects::{accepted, load_small_list, prospect, settled};

/// A browser's view of the console: the cookies it keeps, and the pages it gets.
struct Browser<'a> {
    app: &'a TestApp,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    csp: Option<String>,
    body: String,
}

impl Page {
    /// The form token of the page's first form.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("the page has a form") + 19;
        self.body[at..].split('"').next().unwrap().to_owned()
    }
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self { app, cookies: BTreeMap::new() }
    }

    async fn signed_in(app: &'a TestApp, token: &str) -> Self {
        let mut browser = Self::new(app);
        let form = browser.get("/admin/ui/sign-in").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let done = browser.post("/admin/ui/sign-in", &[("csrf", &form.csrf()), ("token", token)]).await;
        assert_eq!(
            (done.status, done.location.as_deref()),
            (StatusCode::SEE_OTHER, Some("/admin/ui/cases")),
            "{}",
            done.body
        );
        browser
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let response = request.header(COOKIE, self.cookie_header()).send().await.unwrap();
        let header =
            |name| response.headers().get(name).map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned());
        let (location, csp) = (header(LOCATION), header(CONTENT_SECURITY_POLICY));
        let set_cookies: Vec<String> =
            response.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        for cookie in &set_cookies {
            let (pair, attributes) = cookie.split_once(';').unwrap_or((cookie, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page { status: response.status(), location, set_cookies, csp, body: response.text().await.unwrap() }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.app.client.get(self.app.url(path));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.app.client.post(self.app.url(path)).form(form);
        self.send(request).await
    }
}

async fn staff(app: &TestApp, name: &str, role: StaffRole) -> String {
    let token = NewStaffToken::generate();
    onboard::core::staff::create_token(app.store(), name, role, &token, "test", now_ms()).await.unwrap();
    token.token.expose_secret().to_owned()
}

/// Two open cases (possible matches of `MORENO, Daniel` on the small list), oldest first.
async fn two_cases(app: &TestApp) -> (String, String) {
    load_small_list(app).await;
    let moreno = json!({"firstName": "Daniel", "middleName": null, "lastName": "Moreno", "secondLastName": null, "dateOfBirth": null});
    let first = accepted(app, &prospect(1, moreno.clone())).await;
    let second = accepted(app, &prospect(2, moreno)).await;
    for user in [&first, &second] {
        assert_eq!(settled(app, user).await, ("UpgradePending".into(), "Compliance".into()));
    }
    (first, second)
}

/// A dead-lettered job of a kind no worker runs (scheduled for tomorrow first, so none claims it).
async fn dead_job(app: &TestApp) -> onboard::store::JobRow {
    let now = now_ms();
    let job = NewJob { run_at: now + 86_400_000, ..NewJob::new("test.seeded", json!({}), now) };
    app.store().enqueue_job(&job, now).await.unwrap();
    let sql = "UPDATE jobs SET state = 'dead', attempts = 3, last_error = 'seeded failure' WHERE kind = 'test.seeded' RETURNING id";
    assert!(count(app.database_url(), sql).await > 0);
    app.store().list_jobs(Some("test.seeded"), Some("dead"), 1).await.unwrap().pop().unwrap()
}

async fn still_open(app: &TestApp, user: &str) -> bool {
    app.store().compliance_cases(0, 100).await.unwrap().iter().any(|c| c.public_id == user)
}

on_both_backends! {
    async fn no_page_or_action_without_a_session(app) {
        let mut browser = Browser::new(&app);
        for path in ["/admin/ui/", "/admin/ui/cases", "/admin/ui/cases/usr:00000000-0000-4000-8000-000000000000", "/admin/ui/users", "/admin/ui/audit", "/admin/ui/ops"] {
            let page = browser.get(path).await;
            assert_eq!((page.status, page.location.as_deref()), (StatusCode::SEE_OTHER, Some("/admin/ui/sign-in")), "{path}");
        }
        for path in ["/admin/ui/cases/usr:00000000-0000-4000-8000-000000000000/clear", "/admin/ui/jobs/1/retry", "/admin/ui/sign-out"] {
            let page = browser.post(path, &[("csrf", "x"), ("reason", "r")]).await;
            assert_eq!(page.status, 403, "{path}");
        }
        // A forged cookie of the right shape opens nothing.
        browser.cookies.insert("onboard-console".into(), "A".repeat(43));
        assert_eq!(browser.get("/admin/ui/cases").await.status, 303);
        // A staff token is not a cookie either.
        let token = staff(&app, "Rita", StaffRole::Operator).await;
        browser.cookies.insert("onboard-console".into(), token);
        assert_eq!(browser.get("/admin/ui/cases").await.status, 303);

        // The sign-in page: no script, a strict policy.
        let page = browser.get("/admin/ui/sign-in").await;
        assert_eq!(page.status, 200);
        let csp = page.csp.unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'") && !csp.contains("script-src"), "{csp}");
        assert!(!page.body.contains("<script"), "the console has no script");
        let css = browser.get("/admin/ui/assets/console.css").await;
        assert_eq!(css.status, 200);
        assert!(css.body.contains(":root"));
    }

    async fn signing_in_takes_a_live_staff_token_and_the_forms_own_token(app) {
        let token = staff(&app, "Rita", StaffRole::Compliance).await;
        let mut browser = Browser::new(&app);
        let form = browser.get("/admin/ui/sign-in").await;
        assert!(form.set_cookies.iter().any(|c| c.starts_with("onboard-console-sign-in=") && c.contains("HttpOnly") && c.contains("SameSite=Strict")));
        // Missing or wrong form token: 403, no session.
        for bad in ["", "wrong"] {
            let page = browser.post("/admin/ui/sign-in", &[("csrf", bad), ("token", &token)]).await;
            assert_eq!(page.status, 403, "{bad:?}");
            assert!(page.set_cookies.is_empty());
        }
        let page = browser.post("/admin/ui/sign-in", &[("token", &token)]).await;
        assert_eq!(page.status, 403);
        // A partner's API key, a mistyped token: 401 and the form again.
        for wrong in [app.sandbox.api_key.as_str(), &format!("{token}x"), ""] {
            let csrf = browser.get("/admin/ui/sign-in").await.csrf();
            let page = browser.post("/admin/ui/sign-in", &[("csrf", &csrf), ("token", wrong)]).await;
            assert_eq!(page.status, 401, "{wrong}");
            assert!(page.body.contains("not a live staff token"));
            assert!(!page.set_cookies.iter().any(|c| c.starts_with("onboard-console=")));
        }
        // From another site: refused.
        let csrf = browser.get("/admin/ui/sign-in").await.csrf();
        let request = app.client.post(app.url("/admin/ui/sign-in")).header(ORIGIN, "https://evil.example").form(&[("csrf", csrf.as_str()), ("token", token.as_str())]);
        assert_eq!(browser.send(request).await.status, 403);
        // A malformed form: 400, nothing changes.
        let request = app.client.post(app.url("/admin/ui/sign-in")).header("content-type", "application/json").body("{}");
        assert_eq!(browser.send(request).await.status, 400);

        let csrf2 = browser.get("/admin/ui/sign-in").await.csrf();
        assert_ne!(csrf, csrf2, "every form gets a fresh token");
        let page = browser.post("/admin/ui/sign-in", &[("csrf", &csrf2), ("token", &token)]).await;
        assert_eq!((page.status, page.location.as_deref()), (StatusCode::SEE_OTHER, Some("/admin/ui/cases")));
        let cookie = page.set_cookies.iter().find(|c| c.starts_with("onboard-console=")).unwrap();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/admin/ui"), "{cookie}");
        assert!(!cookie.contains(&token), "the token itself is not the cookie");
        let queue = browser.get("/admin/ui/cases").await;
        assert_eq!(queue.status, 200);
        assert!(queue.body.contains("Rita") && queue.body.contains("No open case"));
        let audit = app.store().audit_log(10).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "console.sign_in" && e.actor == "staff:Rita"), "{audit:?}");
        // Only the hash of the cookie's secret is stored.
        let secret = &browser.cookies["onboard-console"];
        let stored = count(app.database_url(), "SELECT COUNT(*) FROM console_sessions").await;
        assert_eq!(stored, 1);
        assert!(!format!("{:?}", app.store().audit_log(10).await.unwrap()).contains(secret.as_str()));
    }

    async fn a_compliance_token_cannot_reach_operations(app) {
        let job = dead_job(&app).await;

        let reviewer = staff(&app, "Rita", StaffRole::Compliance).await;
        let mut browser = Browser::signed_in(&app, &reviewer).await;
        let queue = browser.get("/admin/ui/cases").await;
        assert!(!queue.body.contains("/admin/ui/ops"), "no menu entry for a page the role cannot open");
        assert_eq!(browser.get("/admin/ui/ops").await.status, 403);
        let csrf = queue.csrf();
        let retry = browser.post(&format!("/admin/ui/jobs/{}/retry", job.id), &[("csrf", &csrf)]).await;
        assert_eq!(retry.status, 403);
        assert_eq!(app.store().list_jobs(Some("test.seeded"), Some("dead"), 1).await.unwrap().len(), 1);

        let operator = staff(&app, "Otto", StaffRole::Operator).await;
        let mut browser = Browser::signed_in(&app, &operator).await;
        let ops = browser.get("/admin/ui/ops").await;
        assert_eq!(ops.status, 200);
        assert!(ops.body.contains("seeded failure") && ops.body.contains("test.seeded"));
        // Partners without secrets.
        assert!(ops.body.contains(&app.sandbox.partner_id.to_string()));
        assert!(!ops.body.contains(app.sandbox.api_key.as_str()));
        let csrf = ops.csrf();
        let retried = browser.post(&format!("/admin/ui/jobs/{}/retry", job.id), &[("csrf", &csrf)]).await;
        assert_eq!((retried.status, retried.location.clone()), (StatusCode::SEE_OTHER, Some(format!("/admin/ui/ops?retried={}", job.id))));
        assert!(app.store().list_jobs(Some("test.seeded"), Some("dead"), 1).await.unwrap().is_empty());
        let again = browser.post(&format!("/admin/ui/jobs/{}/retry", job.id), &[("csrf", &csrf)]).await;
        assert_eq!(again.status, 409);
        assert!(again.body.contains("not a dead letter"));
        let audit = app.store().audit_log(10).await.unwrap();
        assert_eq!(audit.iter().filter(|e| e.action == "job.retry").count(), 1);
    }

    async fn decisions_need_the_sessions_form_token(app) {
        let (first, second) = two_cases(&app).await;
        let reviewer = staff(&app, "Rita", StaffRole::Compliance).await;
        let mut browser = Browser::signed_in(&app, &reviewer).await;
        let queue = browser.get("/admin/ui/cases").await;
        assert!(queue.body.find(&first).unwrap() < queue.body.find(&second).unwrap(), "oldest first");
        // Filters: by reason and partner; a bad one is a 400.
        let partner = app.sandbox.partner_id;
        for (filter, shown) in [(format!("reason=sanctions&partner={partner}"), true), ("reason=kyc".into(), false), ("partner=999".into(), false), ("reason=&partner=".into(), true)] {
            let page = browser.get(&format!("/admin/ui/cases?{filter}")).await;
            assert_eq!((page.status, page.body.contains(&first) && page.body.contains(&second)), (StatusCode::OK, shown), "{filter}");
        }
        for bad in ["reason=fraud", "partner=x", "after=-"] {
            assert_eq!(browser.get(&format!("/admin/ui/cases?{bad}")).await.status, 400, "{bad}");
        }
        // Paging: the cursor of the first case leaves the second.
        let first_id = count(app.database_url(), &format!("SELECT id FROM users WHERE public_id = '{first}'")).await;
        let page = browser.get(&format!("/admin/ui/cases?after={first_id}")).await;
        assert!(!page.body.contains(&format!("href=\"/admin/ui/cases/{first}\"")) && page.body.contains(&second));
        let case = browser.get(&format!("/admin/ui/cases/{first}")).await;
        assert_eq!(case.status, 200);
        assert!(case.body.contains("MORENO") && case.body.contains("You hold this case"), "{}", case.body);
        let csrf = case.csrf();
        let clear = format!("/admin/ui/cases/{first}/clear");
        assert_eq!(browser.post(&clear, &[("reason", "different person")]).await.status, 403);
        assert_eq!(browser.post(&clear, &[("csrf", "wrong"), ("reason", "different person")]).await.status, 403);
        // Another session's token is not this one's.
        let mut other = Browser::signed_in(&app, &reviewer).await;
        let other_csrf = other.get("/admin/ui/cases").await.csrf();
        assert_ne!(other_csrf, csrf);
        assert_eq!(browser.post(&clear, &[("csrf", &other_csrf), ("reason", "different person")]).await.status, 403);
        let request = app.client.post(app.url(&clear)).header(ORIGIN, "https://evil.example").form(&[("csrf", csrf.as_str()), ("reason", "x")]);
        assert_eq!(browser.send(request).await.status, 403);
        // No reason: the case again, with what is missing.
        let empty = browser.post(&clear, &[("csrf", &csrf), ("reason", "  ")]).await;
        assert_eq!(empty.status, 400);
        assert!(empty.body.contains("Write why"));
        assert!(still_open(&app, &first).await, "nothing changed");

        let done = browser.post(&clear, &[("csrf", &csrf), ("reason", "different person: DOB differs")]).await;
        assert_eq!(done.status, 303);
        assert!(!still_open(&app, &first).await);
        let queue = browser.get(done.location.as_deref().unwrap()).await;
        assert!(queue.body.contains(&format!("Case {first} cleared.")) && !queue.body.contains(&format!("href=\"/admin/ui/cases/{first}\"")));
        let audit = browser.get("/admin/ui/audit").await;
        assert!(audit.body.contains("compliance.clear") && audit.body.contains("different person: DOB differs"));
    }

    async fn two_reviewers_see_who_holds_a_case_and_who_decided_it(app) {
        let (first, second) = two_cases(&app).await;
        let rita = staff(&app, "Rita", StaffRole::Compliance).await;
        let sam = staff(&app, "Sam", StaffRole::Compliance).await;
        let mut a = Browser::signed_in(&app, &rita).await;
        let mut b = Browser::signed_in(&app, &sam).await;
        let a_case = a.get(&format!("/admin/ui/cases/{first}")).await;
        assert!(a_case.body.contains("You hold this case"));
        let b_case = b.get(&format!("/admin/ui/cases/{first}")).await;
        assert!(b_case.body.contains("staff:Rita holds this case"), "{}", b_case.body);
        assert!(b.get("/admin/ui/cases").await.body.contains("staff:Rita"), "the queue shows the holder");
        // Sam cannot decide while Rita holds it, through the console or the API.
        let refused = b.post(&format!("/admin/ui/cases/{first}/block"), &[("csrf", &b_case.csrf()), ("reason", "match")]).await;
        assert_eq!(refused.status, 409);
        assert!(refused.body.contains("held by staff:Rita"), "{}", refused.body);
        let api = app.client.post(app.url(&format!("/admin/compliance/{first}/block"))).bearer_auth(&sam).json(&json!({"reason": "match"})).send().await.unwrap();
        assert_eq!(api.status(), 409);
        assert!(still_open(&app, &first).await);

        // The break-glass CLI is not held back (it is audited as cli:…).
        assert!(a.get(&format!("/admin/ui/cases/{second}")).await.body.contains("You hold this case"));
        let decision = CaseDecision { user: second.clone(), clear: false, reason: "confirmed".into(), actor: "cli:ops".into() };
        onboard::core::onboarding::decide_case(app.store(), decision, now_ms()).await.unwrap();

        // Rita lets go; Sam takes the case, and now Rita waits.
        let released = a.post(&format!("/admin/ui/cases/{first}/release"), &[("csrf", &a_case.csrf())]).await;
        assert_eq!(released.status, 303);
        assert!(b.get(&format!("/admin/ui/cases/{first}")).await.body.contains("You hold this case"));
        let waits = a.post(&format!("/admin/ui/cases/{first}/block"), &[("csrf", &a_case.csrf()), ("reason", "match")]).await;
        assert_eq!(waits.status, 409);
        assert!(waits.body.contains("held by staff:Sam"), "{}", waits.body);
        assert_eq!(b.post(&format!("/admin/ui/cases/{first}/clear"), &[("csrf", &b_case.csrf()), ("reason", "different person")]).await.status, 303);
        // Too late: Rita learns who decided, on the console and on the API.
        let late = a.post(&format!("/admin/ui/cases/{first}/block"), &[("csrf", &a_case.csrf()), ("reason", "match")]).await;
        assert_eq!(late.status, 409);
        assert!(late.body.contains("cleared by staff:Sam at"), "{}", late.body);
        let api = app.client.post(app.url(&format!("/admin/compliance/{first}/block"))).bearer_auth(&rita).json(&json!({"reason": "match"})).send().await.unwrap();
        let problem: serde_json::Value = api.json().await.unwrap();
        assert!(problem["detail"].as_str().unwrap().contains("cleared by staff:Sam"), "{problem}");
    }

    async fn a_cookie_from_before_sign_out_is_refused(app) {
        let token = staff(&app, "Rita", StaffRole::Operator).await;
        let mut browser = Browser::signed_in(&app, &token).await;
        let kept = browser.cookies.clone();
        let csrf = browser.get("/admin/ui/cases").await.csrf();
        let out = browser.post("/admin/ui/sign-out", &[("csrf", &csrf)]).await;
        assert_eq!((out.status, out.location.as_deref()), (StatusCode::SEE_OTHER, Some("/admin/ui/sign-in")));
        assert!(out.set_cookies.iter().any(|c| c.starts_with("onboard-console=;") && c.contains("Max-Age=0")));
        // The old cookie, replayed: no page, no action.
        browser.cookies = kept;
        assert_eq!(browser.get("/admin/ui/cases").await.location.as_deref(), Some("/admin/ui/sign-in"));
        assert_eq!(browser.post("/admin/ui/sign-out", &[("csrf", &csrf)]).await.status, 403);
        let audit = app.store().audit_log(10).await.unwrap();
        assert_eq!(audit.iter().filter(|e| e.action == "console.sign_out").count(), 1);

        // Revoking the token ends its sessions too.
        let mut browser = Browser::signed_in(&app, &token).await;
        assert_eq!(browser.get("/admin/ui/cases").await.status, 200);
        assert!(onboard::core::staff::revoke_token(app.store(), "Rita", "test", now_ms()).await.unwrap());
        assert_eq!(browser.get("/admin/ui/cases").await.status, 303);
    }

    async fn names_with_markup_render_as_text(app) {
        load_small_list(&app).await;
        let hostile = "<script>alert(1)</script>";
        let body = prospect(7, json!({"middleName": hostile}));
        let user = accepted(&app, &body).await;
        settled(&app, &user).await;
        let token = staff(&app, "<b>Rita</b>", StaffRole::Compliance).await;
        let mut browser = Browser::signed_in(&app, &token).await;
        let found = browser.get(&format!("/admin/ui/users?q=ana.7%40correo.mx&partner={}", app.sandbox.partner_id)).await;
        assert_eq!(found.location.as_deref(), Some(format!("/admin/ui/users/{user}").as_str()));
        let page = browser.get(&format!("/admin/ui/users/{user}")).await;
        assert_eq!(page.status, 200);
        // Shown, as text: the markup's brackets are escaped (askama writes them as `&#60;`/`&#62;`).
        let escaped = |text: &str| text.replace('<', "&#60;").replace('>', "&#62;");
        assert!(page.body.contains(&escaped(hostile)), "{}", page.body);
        assert!(page.body.contains(&escaped("<b>Rita</b>")));
        assert!(!page.body.contains("<script") && !page.body.contains("<b>Rita"));
    }

    async fn timelines_are_found_exactly_within_a_partner(app) {
        load_small_list(&app).await;
        let user = accepted(&app, &prospect(3, json!({}))).await;
        settled(&app, &user).await;
        let token = staff(&app, "Rita", StaffRole::Compliance).await;
        let mut browser = Browser::signed_in(&app, &token).await;
        let partner = app.sandbox.partner_id;
        let to_user = format!("/admin/ui/users/{user}");
        for q in [user.as_str(), "ana.3%40correo.mx", "ANA.3%40Correo.MX", "%2B5215521000003"] {
            let page = browser.get(&format!("/admin/ui/users?q={q}&partner={partner}")).await;
            assert_eq!(page.location.as_deref(), Some(to_user.as_str()), "{q}: {}", page.body);
        }
        // A user id needs no partner; the rest do.
        assert_eq!(browser.get(&format!("/admin/ui/users?q={user}")).await.location.as_deref(), Some(to_user.as_str()));
        let page = browser.get("/admin/ui/users?q=ana.3%40correo.mx").await;
        assert_eq!(page.status, 404);
        assert!(page.body.contains("Choose the partner"));
        assert_eq!(browser.get(&format!("/admin/ui/users?q=ana.9%40correo.mx&partner={partner}")).await.status, 404);
        assert_eq!(browser.get("/admin/ui/users?partner=abc&q=x").await.status, 400);
        let timeline = browser.get(&to_user).await;
        assert!(timeline.body.contains("Completed/None") && timeline.body.contains("ana.3@correo.mx"), "{}", timeline.body);
        assert_eq!(browser.get("/admin/ui/users/usr:nonsense").await.status, 404);
    }
}

/// The walk-through of issue 26 in headless Chromium (`tests/browser/console.mjs`): sign in, open
/// the oldest case, see the evidence, clear it, see it leave the queue and its audit entry, block
/// the other, open a timeline by e-mail, retry a dead job. Screenshots go to `target/console/`.
#[tokio::test]
async fn the_console_works_in_headless_chromium() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready =
        std::path::Path::new(&chromium).exists() && root.join("tests/browser/node_modules/playwright-core").exists();
    if !tool_installed(ready, "Chromium and tests/browser's playwright-core (npm ci)") {
        return;
    }
    let app = TestApp::spawn_with(Backend::Sqlite, |_| {}).await.expect("sqlite is always there");
    let (first, second) = two_cases(&app).await;
    let job = dead_job(&app).await;
    let reviewer = staff(&app, "Rita Reviewer", StaffRole::Compliance).await;
    let operator = staff(&app, "Otto Operator", StaffRole::Operator).await;

    let screenshots = root.join("target/console");
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut command = std::process::Command::new("node");
    command.current_dir(root.join("tests/browser")).arg("console.mjs").arg(app.url("")).arg(&screenshots);
    command
        .env("CHROMIUM", &chromium)
        .env("REVIEWER_TOKEN", &reviewer)
        .env("OPERATOR_TOKEN", &operator)
        .env("FIRST_CASE", &first)
        .env("SECOND_CASE", &second)
        .env("EMAIL", "ana.2@correo.mx")
        .env("PARTNER_ID", app.sandbox.partner_id.to_string())
        .env("DEAD_JOB", job.id.to_string());
    let walked = crate::docs::run(command).await;
    let report = String::from_utf8_lossy(&walked.stdout);
    assert!(walked.status.success(), "{report}{}", String::from_utf8_lossy(&walked.stderr));
    let report: serde_json::Value = serde_json::from_str(&report).expect("the script prints its report");
    assert!(report["steps"].as_array().unwrap().len() >= 20, "{report}");
    for shot in report["screenshots"].as_array().unwrap() {
        let path = shot.as_str().unwrap();
        assert!(std::fs::metadata(path).is_ok_and(|m| m.len() > 5_000), "no screenshot at {path}");
    }
    // What the browser did is what the database holds.
    assert!(!still_open(&app, &first).await && !still_open(&app, &second).await);
    let audit = app.store().audit_log(20).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for action in ["console.sign_in", "compliance.clear", "compliance.block", "console.sign_out", "job.retry"] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
}
