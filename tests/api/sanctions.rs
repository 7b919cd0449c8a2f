//! Sanctions: the admin screening route, staff tokens, list versions, and re-screening of users
//! when a new list is loaded — on SQLite and PostgreSQL.

use std::path::Path;
use std::time::Duration;

use onboard::auth::staff::{NewStaffToken, StaffRole};
use onboard::domain::address::Country;
use onboard::domain::cip::{CipState, Transition};
use onboard::domain::cip::{Detail, Status};
use onboard::domain::prospect::{DateOfBirth, PersonName, Prospect};
use onboard::domain::{Environment, PartnerId, PartnerName, PublicUserId, now_ms};
use onboard::domain::{Phone, parse_date};
use onboard::sanctions::{ListFiles, ListSelection, ListSource, Publication, read_dir};
use onboard::store::{NewProspect, events, pin_unit, prospects};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};
use crate::on_both_backends;

fn small_list() -> ListFiles {
    read_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ofac-small"), ListSource::OfacSdn).unwrap().0
}

/// The small list plus one newly designated person.
fn small_list_with_new_designation() -> ListFiles {
    let mut files = small_list();
    files.file_mut("sdn.csv").unwrap().extend_from_slice(
        b"99001,\"QUIXANO, Alonso\",\"individual\",\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,\"DOB 02 Feb 1980; nationality Spain.\"\r\n",
    );
    files
}

async fn load(app: &TestApp, files: ListFiles, source: &str) -> (i64, bool) {
    let (version, created) = app
        .state
        .sanctions
        .install(app.store(), Publication { files, source: source.into(), published_on: None })
        .await
        .unwrap();
    (version.id, created)
}

async fn staff_token(app: &TestApp, name: &str, role: StaffRole) -> String {
    let token = NewStaffToken::generate();
    onboard::core::staff::create_token(app.store(), name, role, &token, "test", now_ms()).await.unwrap();
    token.token.expose_secret().to_owned()
}

async fn screen(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.client.post(app.url("/admin/sanctions/screen")).bearer_auth(token).json(body).send().await.unwrap()
}

/// A person in the CIP machine's first state, with no validation jobs: only re-screening moves it.
async fn person(app: &TestApp, first: &str, last: &str, dob: &str, country: &str) -> i64 {
    person_with_public_id(app, first, last, dob, country).await.0
}

/// `person`, with the user id partners and staff see.
async fn person_with_public_id(app: &TestApp, first: &str, last: &str, dob: &str, country: &str) -> (i64, String) {
    person_of(app, PartnerId::new(app.sandbox.partner_id).unwrap(), first, last, dob, country).await
}

/// `person_with_public_id`, of any partner.
async fn person_of(
    app: &TestApp,
    partner: PartnerId,
    first: &str,
    last: &str,
    dob: &str,
    country: &str,
) -> (i64, String) {
    let prospect = Prospect {
        first_name: PersonName::parse(first).unwrap(),
        middle_name: None,
        last_name: PersonName::parse(last).unwrap(),
        second_last_name: None,
        gender: None,
        date_of_birth: parse_date(dob).map(DateOfBirth::stored),
        email: None,
        phone: Phone::parse(&format!("+5255{:08}", rand::random::<u32>() % 100_000_000)).unwrap(),
        language: None,
        street: None,
        city: None,
        state: None,
        country: Country::parse(country),
        place_detail: None,
        address_location: None,
        user_location: None,
    };
    let public_id = PublicUserId::generate();
    let public = public_id.as_str().to_owned();
    let new = NewProspect {
        partner,
        public_id,
        prospect,
        state: CipState::ACCEPTED,
        kyc_required: false,
        created_at: now_ms(),
    };
    app.store()
        .write(move |mut tx| {
            pin_unit(async move {
                let id = prospects::insert(&mut tx, &new).await?;
                let accepted = Transition::new(None, new.state, "accepted", "test").unwrap();
                events::append(&mut tx, id, partner.get(), &accepted, new.created_at).await?;
                Ok(id)
            })
        })
        .await
        .map(|id| (id, public))
        .unwrap()
}

/// Waits until the user has `count` timeline events and returns them.
async fn events_reach(app: &TestApp, user: i64, count: usize) -> Vec<onboard::store::UserEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = app.store().user_events(user).await.unwrap();
        if events.len() >= count {
            return events;
        }
        assert!(tokio::time::Instant::now() < deadline, "expected {count} events: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `count` re-screening jobs are done (one page per list version here).
async fn rescreens_done(app: &TestApp, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.store().list_jobs(Some("sanctions.rescreen"), Some("done"), 100).await.unwrap().len() < count {
        assert!(tokio::time::Instant::now() < deadline, "the re-screening job did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_both_backends! {
    async fn admin_screening_is_authenticated_recorded_and_audited(app) {
        let token = staff_token(&app, "Rita Reviewer", StaffRole::Compliance).await;
        let body = json!({"name": "Daniel Moreno", "dateOfBirth": "1972-10-12", "country": "BZ"});

        // Before any list is loaded, screening is unavailable rather than silently clear.
        let response = screen(&app, &token, &body).await;
        assert_eq!(response.headers()["retry-after"], "30");
        assert_problem(response, 503).await;

        let (list, created) = load(&app, small_list(), "test:small").await;
        assert!(created);
        let response = screen(&app, &token, &body).await;
        assert_eq!(response.status(), 200);
        let result: Value = response.json().await.unwrap();
        assert_eq!(result["listVersion"], list);
        assert_eq!(result["decision"], "match");
        let top = &result["matches"][0];
        assert_eq!(top["entityId"], 15102);
        assert_eq!(top["name"], "MORENO, Daniel");
        assert_eq!(top["decision"], "match");
        let reasons: Vec<&str> = top["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        assert!(reasons.contains(&"DOB equal"), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.starts_with("country BZ")), "{reasons:?}");

        // Name parts are accepted instead of one name; a common name is clear.
        let clear: Value = screen(&app, &token, &json!({"firstName": "John", "lastName": "Smith", "dateOfBirth": "1980-01-01", "country": "US"}))
            .await.json().await.unwrap();
        assert_eq!(clear["decision"], "clear");
        assert_eq!(clear["matches"], json!([]));

        // Both screenings are stored with their list version; the actions are audited by name.
        let audit = app.store().audit_log(10).await.unwrap();
        let screens: Vec<_> = audit.iter().filter(|e| e.action == "sanctions.screen").collect();
        assert_eq!(screens.len(), 2);
        assert!(screens.iter().all(|e| e.actor == "staff:Rita Reviewer"));
        let current: Value = app.client.get(app.url("/admin/sanctions/list")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        assert_eq!(current["id"], list);
        assert_eq!(current["counts"]["entries"], 17);
    }

    async fn admin_routes_refuse_partners_revoked_tokens_and_bad_input(app) {
        load(&app, small_list(), "test:small").await;
        let body = json!({"name": "Daniel Moreno"});
        // No credentials, a partner's access token, a partner's API key as a bearer: all 401.
        let response = app.client.post(app.url("/admin/sanctions/screen")).json(&body).send().await.unwrap();
        assert_problem(response, 401).await;
        let partner_token = app.sandbox_token().await;
        assert_problem(screen(&app, &partner_token, &body).await, 401).await;
        assert_problem(screen(&app, &app.sandbox.api_key, &body).await, 401).await;

        // A staff token is not a partner credential either.
        let token = staff_token(&app, "Olly Operator", StaffRole::Operator).await;
        let response = app.client.get(app.url("/partner")).bearer_auth(&token).send().await.unwrap();
        assert_problem(response, 401).await;

        // Every bad field at once; unknown types and fields are 400s.
        let problem = assert_problem(screen(&app, &token, &json!({"name": "X", "dateOfBirth": "1972-02-30", "country": "XX"})).await, 400).await;
        let fields: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["dateOfBirth", "country"]);
        assert_problem(screen(&app, &token, &json!({"name": "X", "type": "boat"})).await, 400).await;
        assert_problem(screen(&app, &token, &json!({"name": "X", "nickname": "Y"})).await, 400).await;
        assert_problem(screen(&app, &token, &json!({})).await, 400).await;

        // Operators see the job queue; compliance reviewers do not.
        let reviewer = staff_token(&app, "Rita Reviewer", StaffRole::Compliance).await;
        let jobs = app.client.get(app.url("/admin/jobs?state=done")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(jobs.status(), 200);
        let response = app.client.get(app.url("/admin/jobs")).bearer_auth(&reviewer).send().await.unwrap();
        assert_problem(response, 403).await;
        // A bad query string is a problem+json 400 like any other bad input.
        for path in ["/admin/jobs?limit=abc", "/admin/compliance?after=x"] {
            let response = app.client.get(app.url(path)).bearer_auth(&token).send().await.unwrap();
            let problem = assert_problem(response, 400).await;
            assert_eq!(problem["errors"][0]["field"], "query", "{path}: {problem}");
        }

        // Revoked tokens stop working at once.
        assert!(onboard::core::staff::revoke_token(app.store(), "Olly Operator", "test", now_ms()).await.unwrap());
        assert_problem(screen(&app, &token, &body).await, 401).await;
    }

    async fn a_new_list_rescreens_users_and_moves_newly_listed_ones_to_compliance(app) {
        let (first, _) = load(&app, small_list(), "test:small").await;
        let bystander = person(&app, "Maria", "Lopez", "1985-04-12", "MX").await;
        let newly_listed = person(&app, "Alonso", "Quixano", "1980-02-02", "ES").await;

        // The same files again: nothing new, no second re-screening.
        assert_eq!(load(&app, small_list(), "test:small-again").await, (first, false));

        let (second, created) = load(&app, small_list_with_new_designation(), "test:small+1").await;
        assert!(created && second > first);

        let store = app.store().clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let events = store.user_events(newly_listed).await.unwrap();
            if events.len() == 2 {
                assert_eq!(events[1].from_status.as_deref(), Some(Status::UpgradeInProgress.as_str()));
                assert_eq!(events[1].to_status, Status::UpgradePending.as_str());
                assert_eq!(events[1].to_detail, Detail::Compliance.as_str());
                assert_eq!(events[1].actor, "sanctions:rescreen");
                assert!(events[1].reason.contains("99001"), "{}", events[1].reason);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the re-screening job did not run: {events:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Both users were screened against the new list and recorded; the bystander did not move.
        let screenings = store.user_screenings(newly_listed).await.unwrap();
        assert_eq!((screenings[0].0, screenings[0].1.as_str()), (second, "match"));
        let bystander_screenings = store.user_screenings(bystander).await.unwrap();
        assert_eq!(bystander_screenings[0].1, "clear");
        assert_eq!(store.user_events(bystander).await.unwrap().len(), 1);
        let done = store.list_jobs(Some("sanctions.rescreen"), Some("done"), 10).await.unwrap();
        assert_eq!(done.len(), 2, "one page per list version: {done:?}");
    }

    async fn a_cleared_case_stays_cleared_until_the_listed_entry_changes(app) {
        load(&app, small_list(), "test:small").await;
        let (quixano, public) = person_with_public_id(&app, "Alonso", "Quixano", "1980-02-02", "ES").await;
        load(&app, small_list_with_new_designation(), "test:small+1").await;
        let flagged = events_reach(&app, quixano, 2).await;
        assert_eq!(flagged[1].to_detail, Detail::Compliance.as_str());

        // Compliance clears the user of entry 99001 as the list now describes it.
        let decision = onboard::core::onboarding::CaseDecision {
            user: public,
            clear: true,
            reason: "different person: passport checked".into(),
            actor: "staff:rita".into(),
        };
        onboard::core::onboarding::decide_case(app.store(), decision, now_ms()).await.unwrap();
        assert_eq!(events_reach(&app, quixano, 3).await[2].to_detail, Detail::None.as_str());

        // A later list in which entry 99001 is unchanged (another person is designated): screened
        // and recorded, but the case is not reopened.
        let mut unchanged = small_list_with_new_designation();
        unchanged.file_mut("sdn.csv").unwrap().extend_from_slice(
            b"99002,\"PANZA, Sancho\",\"individual\",\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,\"DOB 03 Mar 1975; nationality Spain.\"\r\n",
        );
        let (third, _) = load(&app, unchanged.clone(), "test:small+2").await;
        rescreens_done(&app, 3).await;
        let screenings = app.store().user_screenings(quixano).await.unwrap();
        assert_eq!((screenings[0].0, screenings[0].1.as_str()), (third, "match"), "screened against the new list");
        assert_eq!(app.store().user_events(quixano).await.unwrap().len(), 3, "a cleared, unchanged entry is not re-flagged");

        // The entry changes (a new alias): the clearance no longer covers it.
        let mut changed = unchanged;
        changed.file_mut("alt.csv").unwrap().extend_from_slice(b"99001,99901,\"aka\",\"QUIJANO, Alonso\",-0- \r\n");
        load(&app, changed, "test:small+3").await;
        let reflagged = events_reach(&app, quixano, 4).await;
        assert_eq!((reflagged[3].to_detail.as_str(), reflagged[3].actor.as_str()), (Detail::Compliance.as_str(), "sanctions:rescreen"));
        assert!(reflagged[3].reason.contains("99001"), "{}", reflagged[3].reason);
    }

    async fn every_list_loads_names_itself_in_candidates_and_a_partner_is_screened_against_its_choice(app) {
        let store = app.store();
        let token = staff_token(&app, "Rita Reviewer", StaffRole::Compliance).await;

        // A second partner whose users are screened against OFAC SDN only: the choice is audited.
        let narrow = onboard::core::partners::create(store, &PartnerName::parse("Narrow").unwrap(), Environment::Sandbox, "cli:ops", now_ms()).await.unwrap();
        let narrow = PartnerId::new(narrow.partner_id).unwrap();
        let only_sdn = ListSelection::parse("ofac-sdn").unwrap();
        assert!(onboard::core::partners::set_sanctions_lists(store, narrow, Some(&only_sdn), "cli:ops", now_ms()).await.unwrap());
        let audited = &store.audit_log(1).await.unwrap()[0];
        assert_eq!((audited.action.as_str(), audited.target.as_deref()), ("partner.sanctions_lists.set", Some(narrow.to_string().as_str())));
        let nobody = PartnerId::new(999_999).unwrap();
        assert!(!onboard::core::partners::set_sanctions_lists(store, nobody, None, "cli:ops", now_ms()).await.unwrap());

        // The same person (on the EU list only) at each partner, before the EU list is loaded.
        let everyone = person(&app, "Abu Zayd Umar", "Dorda", "1944-04-04", "LY").await;
        let (chosen, _) = person_of(&app, narrow, "Abu Zayd Umar", "Dorda", "1944-04-04", "LY").await;
        let (sdn, _) = load(&app, small_list(), "test:small").await;
        rescreens_done(&app, 1).await;

        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut versions = vec![(ListSource::OfacSdn, sdn)];
        for (list, dir, published) in [
            (ListSource::OfacCons, "data/ofac-cons", None),
            (ListSource::Un, "tests/fixtures/un-small", Some("2026-02-27")),
            (ListSource::Eu, "tests/fixtures/eu-small", Some("2026-08-05")),
            (ListSource::Uk, "tests/fixtures/uk-small", Some("2026-09-10")),
        ] {
            let publication = Publication::from_dir(&root.join(dir), list).unwrap();
            let (version, created) = onboard::core::staff::load_sanctions_list(store, &app.state.sanctions, publication.clone(), "cli:ops", now_ms()).await.unwrap();
            assert!(created, "{list}");
            assert_eq!((version.list, version.published_on.as_deref()), (list, published), "the XML lists say when they were generated");
            let (again, created) = onboard::core::staff::load_sanctions_list(store, &app.state.sanctions, publication, "cli:ops", now_ms()).await.unwrap();
            assert_eq!((again.id, created), (version.id, false), "{list}: the same files are the same version");
            versions.push((list, version.id));
        }
        rescreens_done(&app, 5).await;

        let response = app.client.get(app.url("/admin/sanctions/lists")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let lists: Value = response.json().await.unwrap();
        let listed: Vec<(String, i64)> = lists.as_array().unwrap().iter().map(|l| (l["list"].as_str().unwrap().to_owned(), l["id"].as_i64().unwrap())).collect();
        let expected: Vec<(String, i64)> = versions.iter().map(|(l, id)| (l.as_str().to_owned(), *id)).collect();
        assert_eq!(listed, expected);

        // Each list's own people are found there, and the candidate says which list and version.
        for (body, list, entity) in [
            (json!({"name": "Abu Zayd Umar Dorda", "dateOfBirth": "1944-04-04"}), "eu", 6106),
            (json!({"name": "Doku Umarov"}), "un", 2960872),
            (json!({"name": "Fadhil Harun", "dateOfBirth": "1972-05-01"}), "uk", i64::from_str_radix("AQD0195", 36).unwrap()),
            (json!({"name": "Ismail Haniya"}), "ofac-cons", 9639),
        ] {
            let response = screen(&app, &token, &body).await;
            assert_eq!(response.status(), 200);
            let screening: Value = response.json().await.unwrap();
            let top = &screening["matches"][0];
            assert_eq!((top["list"].as_str(), top["entityId"].as_i64()), (Some(list), Some(entity)), "{body}: {screening}");
            let version = versions.iter().find(|(l, _)| l.as_str() == list).unwrap().1;
            assert_eq!(top["listVersion"], version);
            assert_eq!(screening["lists"].as_array().unwrap().len(), 5);
            assert!(top["fingerprint"].as_str().unwrap().starts_with(&format!("{list}:")));
        }
        // Screening against some lists only.
        let body = json!({"name": "Abu Zayd Umar Dorda", "dateOfBirth": "1944-04-04", "lists": ["ofac-sdn", "un"]});
        let screening: Value = screen(&app, &token, &body).await.json().await.unwrap();
        assert_eq!(screening["decision"], "clear", "{screening}");
        let named: Vec<&str> = screening["lists"].as_array().unwrap().iter().map(|l| l["list"].as_str().unwrap()).collect();
        assert_eq!(named, ["ofac-sdn", "un"]);
        for bad in [json!({"name": "X", "lists": []}), json!({"name": "X", "lists": ["ofac"]}), json!({"name": "X", "lists": "un"})] {
            assert_problem(screen(&app, &token, &bad).await, 400).await;
        }

        // The EU list's re-screening moved the user of the partner that screens against every
        // list, and not the same person at the partner that chose OFAC SDN only.
        let moved = events_reach(&app, everyone, 2).await;
        assert_eq!(moved[1].to_detail, Detail::Compliance.as_str());
        let eu = versions.iter().find(|(l, _)| *l == ListSource::Eu).unwrap().1;
        assert!(moved[1].reason.starts_with(&format!("eu list {eu}: match 6106 ")), "{}", moved[1].reason);
        assert_eq!(store.user_events(chosen).await.unwrap().len(), 1, "not screened against the EU list");
        let screened: Vec<i64> = store.user_screenings(chosen).await.unwrap().iter().map(|s| s.0).collect();
        assert_eq!(screened, [sdn], "screened once, by the OFAC SDN list's re-screening, and against it only");

        // Widening the choice to every list re-screens that partner's users against the lists
        // it gained, in the write that records the choice; the other partner's are left alone.
        let others = store.user_screenings(everyone).await.unwrap().len();
        let rescreens = |state| async move { store.list_jobs(Some("sanctions.rescreen"), Some(state), 100).await.unwrap().len() };
        let (queued, done) = (rescreens("queued").await, rescreens("done").await);
        assert!(onboard::core::partners::set_sanctions_lists(store, narrow, None, "cli:ops", now_ms()).await.unwrap());
        let audited = &store.audit_log(1).await.unwrap()[0];
        let detail: Value = serde_json::from_str(&audited.detail).unwrap();
        assert_eq!(detail["rescreening"], json!(["ofac-cons", "un", "eu", "uk"]), "{audited:?}");
        let moved = events_reach(&app, chosen, 2).await;
        assert_eq!(moved[1].to_detail, Detail::Compliance.as_str());
        assert!(moved[1].reason.starts_with(&format!("eu list {eu}: match 6106 ")), "{}", moved[1].reason);
        // One run for the four lists gained, committed with the choice.
        rescreens_done(&app, done + 1).await;
        assert_eq!(rescreens("queued").await + rescreens("running").await, queued);
        assert_eq!(store.user_screenings(everyone).await.unwrap().len(), others);
        assert_eq!(store.user_screenings(chosen).await.unwrap().len(), 2, "screened once more, against every list at once");
        // A choice that gains nothing queues nothing; a partner that does not exist audits nothing.
        let audited = store.audit_log(100).await.unwrap().len();
        assert!(onboard::core::partners::set_sanctions_lists(store, narrow, Some(&only_sdn), "cli:ops", now_ms()).await.unwrap());
        assert!(!onboard::core::partners::set_sanctions_lists(store, nobody, None, "cli:ops", now_ms()).await.unwrap());
        assert_eq!(store.audit_log(100).await.unwrap().len(), audited + 1);
        assert_eq!(rescreens("queued").await, queued);

    }

    async fn a_clearance_holds_while_other_lists_are_re_screened(app) {
        let (doku, public) = person_with_public_id(&app, "Doku", "Umarov", "1964-04-13", "RU").await;
        load(&app, small_list(), "test:small").await;
        let un_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/un-small");
        let un = Publication::from_dir(&un_dir, ListSource::Un).unwrap();
        app.state.sanctions.install(app.store(), un.clone()).await.unwrap();
        let flagged = events_reach(&app, doku, 2).await;
        assert_eq!(flagged[1].to_detail, Detail::Compliance.as_str());
        assert!(flagged[1].reason.contains("un list"), "{}", flagged[1].reason);

        // Lists named but not loaded: no screening against fewer lists than asked for.
        let token = staff_token(&app, "Rita Reviewer", StaffRole::Compliance).await;
        let partial = json!({"name": "Doku Umarov", "lists": ["un", "eu"]});
        let problem = assert_problem(screen(&app, &token, &partial).await, 409).await;
        assert!(problem["detail"].as_str().unwrap().contains("eu"), "{problem}");

        // Another list's new version re-screens the user against every list: its screening
        // still holds the UN candidate, which is what the case shows and the clearance keeps.
        let (sdn2, _) = load(&app, small_list_with_new_designation(), "test:small+1").await;
        rescreens_done(&app, 3).await;
        assert_eq!(app.store().user_screenings(doku).await.unwrap()[0].0, sdn2, "the OFAC SDN re-screening recorded it");
        let newest = &app.store().user_screenings(doku).await.unwrap()[0].3;
        assert!(newest.contains("\"list\":\"un\"") && newest.contains("2960872"), "{newest}");
        let decision = onboard::core::onboarding::CaseDecision {
            user: public,
            clear: true,
            reason: "different person: date of birth checked".into(),
            actor: "staff:rita".into(),
        };
        onboard::core::onboarding::decide_case(app.store(), decision, now_ms()).await.unwrap();
        let cleared = events_reach(&app, doku, 3).await;

        // A new UN version with the entry unchanged: screened, not reopened.
        let mut again = un;
        again.files.file_mut("consolidated.xml").unwrap().extend_from_slice(b"\n");
        app.state.sanctions.install(app.store(), again).await.unwrap();
        rescreens_done(&app, 4).await;
        assert_eq!(app.store().user_screenings(doku).await.unwrap().len(), 4);
        assert_eq!(app.store().user_events(doku).await.unwrap(), cleared, "a cleared, unchanged UN entry is not re-flagged");
    }
}
