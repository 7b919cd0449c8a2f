//! Seed 002 end to end: `register-user-v2`, the validators as jobs, the CIP machine, the
//! scenario matrix of the README, corrections, consents and compliance decisions — on SQLite and
//! PostgreSQL.

use std::path::Path;
use std::time::Duration;

use onboard::auth::staff::{NewStaffToken, StaffRole};
use onboard::domain::{Environment, PartnerId, PartnerName, now_ms};
use onboard::sanctions::{ListSource, Publication, read_dir};
use onboard::store::NewJob;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};
use crate::on_both_backends;

/// The base prospect of the scenario matrix: passes every check.
pub fn ana() -> Value {
    json!({
        "firstName": "Ana", "middleName": "María", "lastName": "Hernández", "secondLastName": "Gómez",
        "gender": "Female", "dateOfBirth": "1990-05-17", "email": "ana.hernandez@correo.mx",
        "phoneNumber": "+5215521206703", "language": "es",
        "street": "Blvd. Kukulcan Km. 4.5", "city": "Cancún", "state": "MX-ROO", "country": "MX",
        "placeDetail": place("Q.R.", "Quintana Roo", 21.1357, -86.7435),
        "addressLatitude": 21.1357, "addressLongitude": -86.7435, "userLatitude": 21.2, "userLongitude": -86.9
    })
}

fn place(state_short: &str, state_long: &str, lat: f64, lng: f64) -> Value {
    json!({
        "place_id": "ChIJ21P2rgUrTI8Ris1fYjy3Ms4",
        "formatted_address": "Blvd. Kukulcan Km. 4.5, Zona Hotelera, Cancún, Q.R., México",
        "address_components": [
            {"long_name": "Cancún", "short_name": "Cancún", "types": ["locality", "political"]},
            {"long_name": state_long, "short_name": state_short, "types": ["administrative_area_level_1", "political"]},
            {"long_name": "México", "short_name": "MX", "types": ["country", "political"]}
        ],
        "geometry": {"location": {"lat": lat, "lng": lng}}
    })
}

/// `ana()` with some fields replaced (null removes one) and a fresh phone/e-mail (`n` apart).
pub fn prospect(n: u32, changes: Value) -> Value {
    let mut body = ana();
    body["phoneNumber"] = format!("+52155{:08}", 21_000_000 + n).into();
    body["email"] = format!("ana.{n}@correo.mx").into();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    body
}

pub async fn load_small_list(app: &TestApp) {
    let files = read_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ofac-small"), ListSource::OfacSdn)
        .unwrap()
        .0;
    app.state
        .sanctions
        .install(app.store(), Publication { files, source: "test:small".into(), published_on: None })
        .await
        .unwrap();
}

async fn register(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/register-user-v2"))
        .header("PartnerApiKey", &app.sandbox.api_key)
        .json(body)
        .send()
        .await
        .unwrap()
}

pub async fn accepted(app: &TestApp, body: &Value) -> String {
    let response = register(app, body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "UpgradeInProgress");
    assert_eq!(answer["statusDetail"], "None");
    answer["userId"].as_str().unwrap().to_owned()
}

async fn status_of(app: &TestApp, query: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/getUserTokenV2"))
        .header("PartnerApiKey", &app.sandbox.api_key)
        .json(query)
        .send()
        .await
        .unwrap()
}

/// Polls `getUserTokenV2` until the user leaves the in-progress states; returns (status, detail).
pub async fn settled(app: &TestApp, user_id: &str) -> (String, String) {
    for _ in 0..600 {
        let answer: Value = status_of(app, &json!({ "userId": user_id })).await.json().await.unwrap();
        let status = answer["status"].as_str().unwrap().to_owned();
        if status != "UpgradeInProgress" && status != "AccountUpgradeInProgress" {
            return (status, answer["statusDetail"].as_str().unwrap().to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{user_id} did not settle");
}

pub async fn staff_token(app: &TestApp, role: StaffRole) -> String {
    let token = NewStaffToken::generate();
    onboard::core::staff::create_token(app.store(), "Rita Reviewer", role, &token, "test", now_ms()).await.unwrap();
    token.token.expose_secret().to_owned()
}

/// Makes every insert into the audit log fail from now on (a trigger in the test's database).
async fn refuse_audit_entries(app: &TestApp) {
    use sqlx::Connection;
    let url = app.database_url();
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$;
             CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

async fn events(app: &TestApp, user_id: &str) -> Vec<Value> {
    let response = app
        .client
        .get(app.url(&format!("/users/{user_id}/events")))
        .header("PartnerApiKey", &app.sandbox.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let timeline: Value = response.json().await.unwrap();
    timeline["events"].as_array().unwrap().clone()
}

fn path(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{}/{}", e["status"].as_str().unwrap(), e["statusDetail"].as_str().unwrap()))
        .collect()
}

async fn require_consents(app: &TestApp, consents: Value) {
    let response = app
        .client
        .patch(app.url("/partner"))
        .header("PartnerApiKey", &app.sandbox.api_key)
        .json(&json!({ "requiredConsents": consents }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn give_consents(app: &TestApp, user_id: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/users/{user_id}/consents")))
        .header("PartnerApiKey", &app.sandbox.api_key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn correct(app: &TestApp, user_id: &str, body: &Value) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/users/{user_id}")))
        .header("PartnerApiKey", &app.sandbox.api_key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The scenario matrix of the README: (input changes to `ana()`, final status, final detail).
fn matrix() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    vec![
        ("all checks pass", json!({}), "Completed", "None"),
        (
            "legacy Mexico City code, no place detail",
            json!({"state": "DF", "placeDetail": null, "addressLatitude": null, "addressLongitude": null}),
            "Completed",
            "None",
        ),
        ("placeholder name", json!({"firstName": "Test"}), "UpgradeSoftFailed", "InvalidPersonalData"),
        ("digits in a name", json!({"lastName": "Hern4ndez"}), "UpgradeSoftFailed", "InvalidPersonalData"),
        ("no date of birth", json!({"dateOfBirth": null}), "UpgradeSoftFailed", "ProvideAdditionalInfo"),
        ("no country", json!({"country": null, "state": null}), "UpgradeSoftFailed", "ProvideAdditionalInfo"),
        (
            "phone from another country",
            json!({"country": "US", "state": "CA", "placeDetail": null, "addressLatitude": null, "addressLongitude": null}),
            "UpgradeSoftFailed",
            "ProvideAdditionalInfo",
        ),
        ("state disagrees with place detail", json!({"state": "JA"}), "UpgradeSoftFailed", "InvalidAddress"),
        (
            "coordinates outside the country",
            json!({"addressLatitude": 40.4168, "addressLongitude": -3.7038}),
            "UpgradeSoftFailed",
            "InvalidAddress",
        ),
        ("disposable e-mail", json!({"email": "ana@mailinator.com"}), "UpgradeSoftFailed", "InvalidEMail"),
        (
            "corroborated sanctions match",
            json!({"firstName": "Daniel", "middleName": null, "lastName": "Moreno", "secondLastName": null, "dateOfBirth": "1972-10-12"}),
            "UpgradeFailed",
            "OfacFailed",
        ),
        (
            "possible sanctions match",
            json!({"firstName": "Daniel", "middleName": null, "lastName": "Moreno", "secondLastName": null, "dateOfBirth": null}),
            "UpgradePending",
            "Compliance",
        ),
    ]
}

on_both_backends! {
    async fn scenario_matrix(app) {
        load_small_list(&app).await;
        let mut users = Vec::new();
        for (n, (_, changes, _, _)) in matrix().into_iter().enumerate() {
            users.push(accepted(&app, &prospect(n as u32, changes)).await);
        }
        for ((name, _, status, detail), user) in matrix().into_iter().zip(&users) {
            assert_eq!(settled(&app, user).await, (status.to_owned(), detail.to_owned()), "{name}");
        }
        // The full path of the good case, as events with reasons and actors.
        let timeline = events(&app, &users[0]).await;
        assert_eq!(path(&timeline), ["UpgradeInProgress/None", "AccountUpgradeInProgress/None", "Completed/None"]);
        assert_eq!(timeline[0]["actor"], format!("partner:{}", app.sandbox.partner_id));
        assert_eq!(timeline[1]["actor"], "cip:validators");
        assert_eq!(timeline[1]["fromStatus"], "UpgradeInProgress");
        assert_eq!(timeline[2]["actor"], "cip:provisioning");
        // Every check ran once per user, and every job finished on its first attempt.
        let (checks, people) = app.store().cip_check_counts(PartnerId::new(app.sandbox.partner_id).unwrap()).await.unwrap();
        assert_eq!((checks, people), (5 * users.len() as i64, users.len() as i64));
        let jobs = app.store().list_jobs(None, None, 1000).await.unwrap();
        let cip: Vec<_> = jobs.iter().filter(|j| j.kind.starts_with("cip.")).collect();
        assert!(cip.iter().all(|j| j.state == "done" && j.attempts == 1), "{cip:?}");
        // The OFAC decision names the entry and the list.
        let ofac = events(&app, &users[10]).await;
        let reason = ofac.last().unwrap()["reason"].as_str().unwrap().to_owned();
        assert!(reason.contains("match 15102"), "{reason}");
    }

    async fn consents_hold_the_account_until_given(app) {
        load_small_list(&app).await;
        require_consents(&app, json!(["privacy", "contract"])).await;
        let user = accepted(&app, &prospect(1, json!({}))).await;
        assert_eq!(settled(&app, &user).await, ("UpgradePending".into(), "OtpPrivacyMissing".into()));
        let answer: Value = give_consents(&app, &user, &json!({"privacy": true})).await.json().await.unwrap();
        assert_eq!(answer["statusDetail"], "OtpContractMissing");
        let answer: Value = give_consents(&app, &user, &json!({"contract": true})).await.json().await.unwrap();
        assert_eq!(answer["status"], "AccountUpgradeInProgress");
        assert_eq!(settled(&app, &user).await, ("Completed".into(), "None".into()));

        // Only the contract required; given before validation finishes: straight through.
        require_consents(&app, json!(["contract"])).await;
        let early = accepted(&app, &prospect(2, json!({}))).await;
        assert_eq!(give_consents(&app, &early, &json!({"contract": true})).await.status(), 200);
        assert_eq!(settled(&app, &early).await, ("Completed".into(), "None".into()));
        let contract_only = accepted(&app, &prospect(3, json!({}))).await;
        assert_eq!(settled(&app, &contract_only).await, ("UpgradePending".into(), "OtpContractMissing".into()));

        // Bad consent bodies change nothing.
        for bad in [json!({}), json!({"privacy": false}), json!({"privacy": "yes"}), json!({"terms": true}), json!([true])] {
            let response = give_consents(&app, &contract_only, &bad).await;
            assert!(response.status() == 400, "{bad}");
        }
        assert_eq!(settled(&app, &contract_only).await.1, "OtpContractMissing");
        let unknown = give_consents(&app, "usr:00000000-0000-7000-8000-000000000000", &json!({"privacy": true})).await;
        assert_problem(unknown, 404).await;
        let response = app.client.patch(app.url("/partner")).header("PartnerApiKey", &app.sandbox.api_key)
            .json(&json!({"requiredConsents": ["marketing"]})).send().await.unwrap();
        assert_problem(response, 400).await;
    }

    async fn corrections_rerun_the_affected_checks(app) {
        load_small_list(&app).await;
        let user = accepted(&app, &prospect(1, json!({"email": "ana@mailinator.com"}))).await;
        assert_eq!(settled(&app, &user).await, ("UpgradeSoftFailed".into(), "InvalidEMail".into()));

        // A correction that changes nothing, or breaks a rule, is refused and changes nothing.
        assert_problem(correct(&app, &user, &json!({"email": "ana@mailinator.com"})).await, 400).await;
        let bad = assert_problem(correct(&app, &user, &json!({"email": "not-an-email", "firstName": null})).await, 400).await;
        let fields: Vec<&str> = bad["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["firstName", "email"]);

        let response = correct(&app, &user, &json!({"email": "ana.fixed@correo.mx"})).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap()["status"], "UpgradeInProgress");
        assert_eq!(settled(&app, &user).await, ("Completed".into(), "None".into()));
        assert_eq!(
            path(&events(&app, &user).await),
            ["UpgradeInProgress/None", "UpgradeSoftFailed/InvalidEMail", "UpgradeInProgress/None",
             "AccountUpgradeInProgress/None", "Completed/None"]
        );
        // Only the e-mail check ran again; the other four results were carried over.
        let jobs = app.store().list_jobs(Some("cip.email"), None, 10).await.unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(app.store().list_jobs(Some("cip.sanctions"), None, 10).await.unwrap().len(), 1);
        // Completed users cannot be "corrected".
        assert_problem(correct(&app, &user, &json!({"city": "Mérida"})).await, 409).await;

        // A correction may not take another user's phone.
        let other = accepted(&app, &prospect(2, json!({"firstName": "Test"}))).await;
        assert_eq!(settled(&app, &other).await.1, "InvalidPersonalData");
        let taken = prospect(1, json!({}))["phoneNumber"].clone();
        let conflict = assert_problem(correct(&app, &other, &json!({"firstName": "Lucía", "phoneNumber": taken})).await, 409).await;
        assert_eq!(conflict["errors"][0]["field"], "phoneNumber");
        assert_eq!(settled(&app, &other).await.1, "InvalidPersonalData");
    }

    async fn compliance_reviewers_clear_and_block_cases(app) {
        load_small_list(&app).await;
        let moreno = json!({"firstName": "Daniel", "middleName": null, "lastName": "Moreno", "secondLastName": null, "dateOfBirth": null});
        let first = accepted(&app, &prospect(1, moreno.clone())).await;
        let second = accepted(&app, &prospect(2, moreno)).await;
        for user in [&first, &second] {
            assert_eq!(settled(&app, user).await, ("UpgradePending".into(), "Compliance".into()));
        }
        let reviewer = staff_token(&app, StaffRole::Compliance).await;
        // Partners never see the case list.
        let response = app.client.get(app.url("/admin/compliance")).header("PartnerApiKey", &app.sandbox.api_key).send().await.unwrap();
        assert_problem(response, 401).await;
        let cases: Value = app.client.get(app.url("/admin/compliance")).bearer_auth(&reviewer).send().await.unwrap().json().await.unwrap();
        let cases = cases.as_array().unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0]["userId"], first.as_str());
        assert_eq!(cases[0]["matches"][0]["entityId"], 15102);

        let decide = |user: &str, action: &str, body: Value| {
            let request = app.client.post(app.url(&format!("/admin/compliance/{user}/{action}"))).bearer_auth(&reviewer).json(&body);
            async move { request.send().await.unwrap() }
        };
        assert_problem(decide(&first, "clear", json!({"reason": ""})).await, 400).await;
        assert_problem(decide(&first, "clear", json!({})).await, 400).await;
        // Cleared: back on track, where the other checks say (the date of birth is missing).
        let cleared: Value = decide(&first, "clear", json!({"reason": "different person: POB Mexico City"})).await.json().await.unwrap();
        assert_eq!((cleared["status"].as_str(), cleared["statusDetail"].as_str()), (Some("UpgradeSoftFailed"), Some("ProvideAdditionalInfo")));
        assert_problem(decide(&first, "block", json!({"reason": "again"})).await, 409).await;
        // The user adds the date of birth: screening runs again and is clear now.
        assert_eq!(correct(&app, &first, &json!({"dateOfBirth": "1990-05-17"})).await.status(), 200);
        assert_eq!(settled(&app, &first).await, ("Completed".into(), "None".into()));

        let blocked: Value = decide(&second, "block", json!({"reason": "confirmed match"})).await.json().await.unwrap();
        assert_eq!(blocked["statusDetail"], "ComplianceBlocked");
        assert_eq!(settled(&app, &second).await, ("UpgradeFailed".into(), "ComplianceBlocked".into()));
        let timeline: Value = app.client.get(app.url(&format!("/admin/users/{second}/events"))).bearer_auth(&reviewer).send().await.unwrap().json().await.unwrap();
        let last = timeline["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["actor"], "staff:Rita Reviewer");
        assert!(last["reason"].as_str().unwrap().contains("confirmed match"));
        let audit = app.store().audit_log(10).await.unwrap();
        let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
        assert!(actions.contains(&"compliance.clear") && actions.contains(&"compliance.block"), "{actions:?}");
        assert!(app.store().compliance_cases(0, 10).await.unwrap().is_empty());
    }

    async fn staff_actions_roll_back_when_their_audit_entry_fails(app) {
        load_small_list(&app).await;
        let moreno = json!({"firstName": "Daniel", "middleName": null, "lastName": "Moreno", "secondLastName": null, "dateOfBirth": null});
        let user = accepted(&app, &prospect(1, moreno)).await;
        assert_eq!(settled(&app, &user).await, ("UpgradePending".into(), "Compliance".into()));
        let operator = staff_token(&app, StaffRole::Operator).await;
        let store = app.store();
        store.enqueue_job(&NewJob::new("test.dead", json!({}), now_ms()), now_ms()).await.unwrap();
        let job = store.claim_jobs("test.dead", "test", 1, 60_000, now_ms()).await.unwrap().remove(0);
        assert!(store.fail_job(&job, "broken", true, now_ms(), now_ms()).await.unwrap());
        // Operators' and partners' credential changes are audited too.
        let partner = onboard::core::partners::create(store, &PartnerName::parse("Audited").unwrap(), Environment::Live, "cli:ops", now_ms())
            .await
            .unwrap();
        let rolled = app.roll_api_key(&partner.api_key, &json!({"expireCurrentKeysInSeconds": 60})).await;
        assert_eq!(rolled.status(), 201);
        let audited = store.audit_log(100).await.unwrap();
        let target = partner.partner_id.to_string();
        let by = |action: &str| audited.iter().find(|e| e.action == action && e.target.as_deref() == Some(target.as_str()));
        assert_eq!(by("partner.create").map(|e| e.actor.as_str()), Some("cli:ops"));
        assert_eq!(by("partner.api_key.rotate").map(|e| e.actor.clone()), Some(format!("partner:{target}")));
        onboard::core::staff::rotate_signing_key(store, &onboard::kek::Kek::development(), Duration::from_secs(60), "cli:ops", now_ms()).await.unwrap();
        let small = || read_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ofac-small"), ListSource::OfacSdn).unwrap().0;
        let again = Publication { files: small(), source: "test:again".into(), published_on: None };
        let (list, created) = onboard::core::staff::load_sanctions_list(store, &app.state.sanctions, again, "cli:ops", now_ms()).await.unwrap();
        assert!(!created, "the same files are the same list");
        assert_eq!(store.audit_log(1).await.unwrap()[0].action, "sanctions.load");
        let timeline = events(&app, &user).await;
        let audited = store.audit_log(100).await.unwrap();
        let newest: Vec<&str> = audited.iter().take(2).map(|e| e.action.as_str()).collect();
        assert_eq!(newest, ["sanctions.load", "signing_key.rotate"]);
        let partners = store.list_partners().await.unwrap().len();
        let kids = |keys: Vec<onboard::store::SigningKeyRecord>| keys.into_iter().map(|k| (k.kid, k.is_current)).collect::<Vec<_>>();
        let signing_keys = kids(store.usable_signing_keys(now_ms()).await.unwrap());

        refuse_audit_entries(&app).await;
        for action in ["clear", "block"] {
            let response = app.client.post(app.url(&format!("/admin/compliance/{user}/{action}"))).bearer_auth(&operator)
                .json(&json!({"reason": "the audit log refuses it"})).send().await.unwrap();
            assert_problem(response, 500).await;
        }
        let response = app.client.post(app.url(&format!("/admin/jobs/{}/retry", job.id))).bearer_auth(&operator).send().await.unwrap();
        assert_problem(response, 500).await;
        let token = NewStaffToken::generate();
        assert!(onboard::core::staff::create_token(store, "Never Made", StaffRole::Operator, &token, "test", now_ms()).await.is_err());
        assert!(onboard::core::staff::revoke_token(store, "Rita Reviewer", "test", now_ms()).await.is_err());
        let never = PartnerName::parse("Never Made").unwrap();
        assert!(onboard::core::partners::create(store, &never, Environment::Live, "cli:ops", now_ms()).await.is_err());
        let rolled = app.roll_api_key(&partner.api_key, &json!({"expireCurrentKeysInSeconds": 0})).await;
        assert_problem(rolled, 500).await;
        assert!(onboard::core::staff::rotate_signing_key(store, &onboard::kek::Kek::development(), Duration::from_secs(60), "cli:ops", now_ms()).await.is_err());
        let mut newer = small();
        newer.file_mut("sdn.csv").unwrap().extend_from_slice(b"99001,\"QUIXANO, Alonso\",\"individual\",\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n");
        let newer = Publication { files: newer, source: "test:newer".into(), published_on: None };
        assert!(onboard::core::staff::load_sanctions_list(store, &app.state.sanctions, newer, "cli:ops", now_ms()).await.is_err());

        // Each action was rolled back with its audit entry: no state moved, nothing was written.
        assert_eq!(settled(&app, &user).await, ("UpgradePending".into(), "Compliance".into()));
        assert_eq!(events(&app, &user).await, timeline);
        assert_eq!(store.compliance_cases(0, 10).await.unwrap().len(), 1);
        assert_eq!(store.list_jobs(Some("test.dead"), None, 10).await.unwrap()[0].state, "dead");
        let tokens = store.list_staff_tokens().await.unwrap();
        assert!(tokens.iter().all(|t| t.name != "Never Made"), "{tokens:?}");
        assert!(tokens.iter().all(|t| t.revoked_at.is_none()), "{tokens:?}");
        assert_eq!(store.list_partners().await.unwrap().len(), partners);
        assert_eq!(store.current_sanctions_lists().await.unwrap().iter().map(|v| v.id).collect::<Vec<_>>(), [list.id]);
        assert_eq!(kids(store.usable_signing_keys(now_ms()).await.unwrap()), signing_keys);
        // The key the refused rotation would have revoked at once still works.
        assert_eq!(app.get_partner_with_key(&partner.api_key).await.status(), 200);
        assert_eq!(store.audit_log(100).await.unwrap(), audited);
    }

    async fn registration_validation_names_every_bad_field(app) {
        let partner = PartnerId::new(app.sandbox.partner_id).unwrap();
        let cases: Vec<(Value, &str)> = vec![
            (json!({"firstName": null}), "firstName"),
            (json!({"lastName": "  "}), "lastName"),
            (json!({"firstName": 7}), "firstName"),
            (json!({"country": "mx"}), "country"),
            (json!({"country": "XX"}), "country"),
            (json!({"state": "TX"}), "state"),
            (json!({"country": null}), "state"),
            (json!({"phoneNumber": null}), "phoneNumber"),
            (json!({"phoneNumber": "5521206703"}), "phoneNumber"),
            (json!({"phoneNumber": "+52 55 2120 670"}), "phoneNumber"),
            (json!({"phoneNumber": "+18002752273"}), "phoneNumber"),
            (json!({"email": "ana@"}), "email"),
            (json!({"gender": "female"}), "gender"),
            (json!({"dateOfBirth": "1990-02-30"}), "dateOfBirth"),
            (json!({"dateOfBirth": "2015-01-01"}), "dateOfBirth"),
            (json!({"dateOfBirth": "1900-01-01"}), "dateOfBirth"),
            (json!({"language": "fr"}), "language"),
            (json!({"placeDetail": {"place_id": "x"}}), "placeDetail"),
            (json!({"placeDetail": "Cancún"}), "placeDetail"),
            (json!({"addressLatitude": 95.0}), "addressLatitude"),
            (json!({"addressLongitude": null}), "addressLongitude"),
            (json!({"userLongitude": -181}), "userLongitude"),
            (json!({"userLatitude": "21.2"}), "userLatitude"),
            (json!({"favouriteColour": "blue"}), "favouriteColour"),
        ];
        for (changes, field) in cases {
            let body = prospect(1, changes.clone());
            let problem = assert_problem(register(&app, &body).await, 400).await;
            let fields: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
            assert_eq!(fields, [field], "{changes}: {problem}");
        }
        // Every problem in one answer.
        let problem = assert_problem(register(&app, &json!({"gender": "x", "language": "x"})).await, 400).await;
        assert_eq!(problem["errors"].as_array().unwrap().len(), 5, "{problem}");
        for body in ["[]", "\"x\"", "{", ""] {
            let response = app.client.post(app.url("/register-user-v2")).header("PartnerApiKey", &app.sandbox.api_key)
                .header("content-type", "application/json").body(body).send().await.unwrap();
            assert_problem(response, 400).await;
        }
        assert_problem(app.client.post(app.url("/register-user-v2")).json(&ana()).send().await.unwrap(), 401).await;
        assert_eq!(app.store().count_users(partner).await.unwrap(), 0, "nothing was written");
    }

    async fn duplicates_and_lookups(app) {
        let user = accepted(&app, &ana()).await;
        // Same phone in its modern form, same e-mail in other case: both named.
        let mut again = ana();
        again["phoneNumber"] = "+525521206703".into();
        again["email"] = "ANA.Hernandez@Correo.MX".into();
        let problem = assert_problem(register(&app, &again).await, 409).await;
        let fields: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["phoneNumber", "email"]);
        let mut phone_only = prospect(5, json!({}));
        phone_only["phoneNumber"] = ana()["phoneNumber"].clone();
        let problem = assert_problem(register(&app, &phone_only).await, 409).await;
        assert_eq!(problem["errors"].as_array().unwrap().len(), 1);
        assert_eq!(app.store().count_users(PartnerId::new(app.sandbox.partner_id).unwrap()).await.unwrap(), 1);

        // getUserTokenV2 by each key; the answers agree.
        for query in [json!({"userId": user}), json!({"phoneNumber": "+52 1 55 2120 6703"}), json!({"email": "ana.hernandez@CORREO.mx"})] {
            let response = status_of(&app, &query).await;
            assert_eq!(response.status(), 200, "{query}");
            assert_eq!(response.json::<Value>().await.unwrap()["userId"], user.as_str());
        }
        for (query, status) in [
            (json!({"userId": "usr:00000000-0000-7000-8000-000000000000"}), 404),
            (json!({"email": "nobody@correo.mx"}), 404),
            (json!({"userId": user, "email": "ana.hernandez@correo.mx"}), 400),
            (json!({}), 400),
            (json!({"userId": "42"}), 400),
            (json!({"phoneNumber": "12"}), 400),
            (json!({"name": "Ana"}), 400),
        ] {
            assert_problem(status_of(&app, &query).await, status).await;
        }
        // Bearer tokens work too.
        let token = app.sandbox_token().await;
        let response = app.client.post(app.url("/getUserTokenV2")).bearer_auth(&token).json(&json!({"userId": user})).send().await.unwrap();
        assert_eq!(response.status(), 200);

        // Another partner sees none of it, and may register the same phone.
        use onboard::auth::credentials::{NewApiKey, NewClient};
        let (key, client) = (NewApiKey::generate(onboard::domain::Environment::Sandbox), NewClient::generate());
        let name = onboard::domain::PartnerName::parse("Other").unwrap();
        app.store().create_partner(&name, onboard::domain::Environment::Sandbox, &key, &client, now_ms()).await.unwrap();
        let other_key = key.key.expose_secret().to_owned();
        let response = app.client.post(app.url("/getUserTokenV2")).header("PartnerApiKey", &other_key).json(&json!({"userId": user})).send().await.unwrap();
        assert_problem(response, 404).await;
        let response = app.client.get(app.url(&format!("/users/{user}/events"))).header("PartnerApiKey", &other_key).send().await.unwrap();
        assert_problem(response, 404).await;
        let response = app.client.post(app.url("/register-user-v2")).header("PartnerApiKey", &other_key).json(&ana()).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }

    async fn the_sanctions_check_screens_against_the_lists_the_partner_chose(app) {
        load_small_list(&app).await;
        let eu = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eu-small");
        let (eu, _) = app.state.sanctions.install(app.store(), Publication::from_dir(&eu, ListSource::Eu).unwrap()).await.unwrap();
        // Another list loaded after it: a reason must quote the version of the candidate's list.
        let un = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/un-small");
        app.state.sanctions.install(app.store(), Publication::from_dir(&un, ListSource::Un).unwrap()).await.unwrap();
        let partner = onboard::domain::PartnerId::new(app.sandbox.partner_id).unwrap();
        let dorda = |n| prospect(n, json!({"firstName": "Abu Zayd Umar", "middleName": null, "lastName": "Dorda", "secondLastName": null, "dateOfBirth": "1944-04-04"}));

        // Screened against OFAC SDN only, the person on the EU list passes the sanctions check.
        let only_sdn = onboard::sanctions::ListSelection::parse("ofac-sdn").unwrap();
        assert!(onboard::core::partners::set_sanctions_lists(app.store(), partner, Some(&only_sdn), "cli:ops", now_ms()).await.unwrap());
        let first = accepted(&app, &dorda(1)).await;
        let (status, detail) = settled(&app, &first).await;
        assert!(detail != "Compliance" && detail != "OfacFailed", "{status}/{detail}");

        // Against every list again (the default), the same person is a corroborated match (the
        // seed's `OfacFailed` names any list's), and the reason names the EU list.
        assert!(onboard::core::partners::set_sanctions_lists(app.store(), partner, None, "cli:ops", now_ms()).await.unwrap());
        // The widening re-screens the partner's users (the first Dorda among them): let it finish
        // first, so that it does not also decide the second one while its checks run.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while app.store().list_jobs(Some("sanctions.rescreen"), Some("done"), 100).await.unwrap().len() < 4 {
            assert!(tokio::time::Instant::now() < deadline, "the re-screenings did not run");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let second = accepted(&app, &dorda(2)).await;
        assert_eq!(settled(&app, &second).await, ("UpgradeFailed".into(), "OfacFailed".into()));
        let timeline = events(&app, &second).await;
        let reason = timeline.iter().find(|e| e["statusDetail"] == "OfacFailed").map(|e| e["reason"].to_string()).unwrap_or_default();
        assert!(reason.contains(&format!("eu list {}: match 6106 ", eu.id)), "{timeline:?}");
    }
}
