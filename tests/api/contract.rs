//! Contract fuzzing: Schemathesis generates requests from `/openapi.json` — the seeds' examples,
//! boundary values, then random ones — and checks each answer against the document: no 5xx, a
//! documented status code, content type, headers and body schema. Each group of routes runs with
//! the credential it takes (partner, end user, staff). A fixed seed and example count make a run
//! repeatable; any failure fails the test with Schemathesis's report (and `curl` to reproduce).

use std::process::Command;

use onboard::auth::staff::StaffRole;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, tool_installed};

/// Conformance checks only: the suite's probes of acceptance (does the server take every
/// schema-valid body?) would flag business rules a schema cannot state (a correction that changes
/// nothing, a refresh grant without its token).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";

fn schemathesis_installed() -> bool {
    Command::new("schemathesis").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// An end user of the sandbox partner, signed up through seed 003 (sandbox code `12345`).
async fn end_user_token(app: &TestApp) -> String {
    let body = json!({"email": "contract@example.com", "password": "A9#bL8@zQ"});
    let signup = |body: Value| {
        app.client.post(app.url("/users")).header("partnerId", app.sandbox.partner_id.to_string()).json(&body).send()
    };
    assert_eq!(signup(body.clone()).await.unwrap().status(), 200);
    let mut confirm = body;
    confirm["emailConfirmCode"] = "12345".into();
    let answer: Value = signup(confirm).await.unwrap().json().await.unwrap();
    answer["access_token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn every_answer_conforms_to_the_document() {
    if !tool_installed(schemathesis_installed(), "schemathesis (pip)") {
        return;
    }
    let app = TestApp::spawn_with(Backend::Sqlite, |_| {}).await.expect("sqlite is always there");
    // A loaded list: screening answers instead of its documented 503 (which counts as a 5xx here).
    crate::prospects::load_small_list(&app).await;
    let partner = app.sandbox_token().await;
    let user = end_user_token(&app).await;
    let staff = crate::kyc::staff_token(&app, StaffRole::Operator).await;
    let end_user_routes = "^/(me|kyc/access-token|accounts|subscriptions|payments)";
    let groups = [
        // Partner routes take the API key or a partner token: both are sent, so Schemathesis does
        // not make up an `Authorization` of its own.
        (
            "partner",
            vec![format!("PartnerApiKey: {}", app.sandbox.api_key), format!("Authorization: Bearer {partner}")],
            vec!["--exclude-path-regex".to_owned(), format!("^/admin|{end_user_routes}")],
        ),
        (
            "end user",
            vec![format!("Authorization: Bearer {user}")],
            vec!["--include-path-regex".to_owned(), end_user_routes.to_owned()],
        ),
        (
            "staff",
            vec![format!("Authorization: Bearer {staff}")],
            vec!["--include-path-regex".to_owned(), "^/admin".to_owned()],
        ),
    ];
    for (who, headers, filter) in groups {
        // In a directory of its own: Schemathesis keeps a cache where it runs, and a run that
        // replayed an earlier one's requests would not be the same run again.
        let workdir = tempfile::tempdir().unwrap();
        let mut command = Command::new("schemathesis");
        command.current_dir(workdir.path());
        command.args(["run", &app.url("/openapi.json"), "--checks", CHECKS, "--max-examples", "15", "--seed", "1"]);
        command.args(["--workers", "1", "--no-color", "--phases", "examples,coverage,fuzzing"]).args(&filter);
        for header in &headers {
            command.args(["-H", header]);
        }
        let run = crate::docs::run(command).await;
        let report = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "Schemathesis failures with {who} credentials:\n{report}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(report.contains("passed"), "{who}: {report}");
        let cases = report.lines().find(|l| l.contains(" generated, ")).unwrap_or_default().trim().to_owned();
        eprintln!("Schemathesis with {who} credentials: {cases}");
    }
}
