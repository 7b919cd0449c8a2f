//! Test harness: a fresh database per test (a SQLite file in a temp dir, or a new PostgreSQL
//! database dropped afterwards) and the real application on a random port.

use std::sync::Once;

use onboard::auth::credentials::IssuedCredentials;
use onboard::config::Settings;
use onboard::http::AppState;
use onboard::startup::Application;
use onboard::store::Store;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server that test databases are created on.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether an outside tool a test drives is installed (`.ci/run` installs each): when it is not,
/// the test is skipped with a note, except in CI, where that fails it.
pub fn tool_installed(installed: bool, what: &str) -> bool {
    if !installed {
        assert!(!in_ci(), "{what} is required in CI (.ci/run installs it)");
        eprintln!("skipping: {what} is not installed (.ci/run installs it)");
    }
    installed
}

/// Whether `python3 -c "import MODULE"` succeeds.
pub fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    /// A new empty database. `None` (test skipped) only when PostgreSQL is unreachable outside
    /// CI; in CI an unreachable PostgreSQL fails the test.
    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("onboard.db").display());
                Some(Self { url, _dir: Some(dir), pg_name: None })
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let admin = postgres_admin_url();
                let mut conn = match sqlx::PgConnection::connect(&admin).await {
                    Ok(conn) => conn,
                    Err(err) if !in_ci() => {
                        eprintln!("skipping PostgreSQL test: {err} (set TEST_DATABASE_URL)");
                        return None;
                    }
                    Err(err) => panic!("PostgreSQL is required in CI: {err}"),
                };
                let name = format!("onboard_test_{}", uuid::Uuid::new_v4().simple());
                // `name` is generated here from a UUID: no injection possible.
                sqlx::query(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
                    .execute(&mut conn)
                    .await
                    .expect("create db");
                let _ = conn.close().await;
                let base = admin.split('?').next().unwrap_or(&admin);
                let (server, _) = base.rsplit_once('/').expect("a database URL has a path");
                Some(Self { url: format!("{server}/{name}"), _dir: None, pg_name: Some(name) })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        // Drop runs outside async context (and during panics): use a private runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                    let _ =
                        sqlx::query(sqlx::AssertSqlSafe(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#)))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}

/// A reqwest client (rustls needs the process's crypto provider installed first).
pub fn http_client() -> reqwest::Client {
    onboard::install_crypto_provider();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.to_owned(),
        ..Settings::default()
    };
    settings.db.max_connections = 4;
    settings.http.shutdown_grace_secs = 1;
    // Tests that screen load a list themselves (most do not need the 6 MB snapshot).
    settings.sanctions.builtin_snapshot = false;
    settings.jobs.poll_interval_ms = 25;
    settings
}

static LOGS: Once = Once::new();

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub sandbox: IssuedCredentials,
    pub state: AppState,
    // Kept for its Drop: the database lives as long as the app.
    _db: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestApp {
    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<Self> {
        LOGS.call_once(crate::logscan::install);
        let db = TestDb::new(backend).await?;
        let mut settings = test_settings(&db.url);
        configure(&mut settings);
        let app = Application::build(settings).await.expect("application builds");
        let address = format!("http://{}", app.local_addr());
        let state = app.state().clone();
        let sandbox = app.bootstrap.as_ref().map(clone_credentials).expect("a fresh database gets a sandbox partner");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let client = http_client();
        Some(Self { address, client, sandbox, state, _db: db, shutdown: Some(tx) })
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The URL of this app's own database (for a test that reaches it directly).
    pub fn database_url(&self) -> &str {
        &self._db.url
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    /// `POST /oauth/token` with the given form and optional HTTP Basic credentials.
    pub async fn post_token(&self, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> reqwest::Response {
        let mut request = self.client.post(self.url("/oauth/token")).form(form);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        request.send().await.expect("request")
    }

    /// A sandbox partner access token from the client-credentials grant.
    pub async fn sandbox_token(&self) -> String {
        let response = self
            .post_token(
                &[("grant_type", "client_credentials")],
                Some((&self.sandbox.client_id, &self.sandbox.client_secret)),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn get_partner_with_key(&self, key: &str) -> reqwest::Response {
        self.client.get(self.url("/partner")).header("PartnerApiKey", key).send().await.expect("request")
    }

    pub async fn get_partner_with_bearer(&self, token: &str) -> reqwest::Response {
        self.client.get(self.url("/partner")).bearer_auth(token).send().await.expect("request")
    }

    pub async fn roll_api_key(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/partner/api-keys"))
            .header("PartnerApiKey", key)
            .json(body)
            .send()
            .await
            .expect("request")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // A test that already failed says why; a second panic here would abort instead.
        if !std::thread::panicking() {
            let s = &self.sandbox;
            crate::logscan::assert_clean(&[&s.api_key, &s.client_secret]);
        }
    }
}

fn clone_credentials(c: &IssuedCredentials) -> IssuedCredentials {
    IssuedCredentials {
        partner_id: c.partner_id,
        name: c.name.clone(),
        environment: c.environment,
        api_key: c.api_key.clone(),
        client_id: c.client_id.clone(),
        client_secret: c.client_secret.clone(),
    }
}

/// Asserts an RFC 9457 problem response and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/problem+json"), "content type {content_type}");
    let body: Value = response.json().await.expect("a JSON problem body");
    assert_eq!(body["status"], status);
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(), "{body}");
    assert_trace_id(&body["traceId"]);
    body
}

pub fn assert_trace_id(value: &Value) {
    let id = value.as_str().unwrap_or_else(|| panic!("traceId missing: {value}"));
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(parts.len(), 4, "{id}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3], "00");
    assert!(parts[1].bytes().chain(parts[2].bytes()).all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
}

/// A count read straight from a test's database (what a test checks behind the API). `sql` is
/// the test's own text.
pub async fn count(url: &str, sql: &str) -> i64 {
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    }
}

/// A migrated `Store` on a fresh database of `backend`, without the application around it.
pub async fn open_store(backend: Backend) -> Option<(Store, TestDb)> {
    let db = TestDb::new(backend).await?;
    let store = onboard::startup::open_store(&test_settings(&db.url)).await.expect("open store");
    Some((store, db))
}

/// Runs each test body once on SQLite and once on PostgreSQL, each on its own fresh database.
/// The parameter says what the body gets:
/// - `async fn name(app) { … }`: the application, with the test settings;
/// - `async fn name(app, |settings| …) { … }`: the application, its settings changed first;
/// - `async fn name(store: Store) { … }`: a migrated `Store` alone (the storage conformance suite);
/// - `async fn name(backend: Backend) { … }`: the backend, for a body that builds its own harness.
#[macro_export]
macro_rules! on_both_backends {
    () => {};
    (async fn $name:ident($store:ident: Store) $body:block $($rest:tt)*) => {
        $crate::on_both_backends!(@test $name, |backend| {
            let Some(($store, _db)) = $crate::helpers::open_store(backend).await else { return };
            $body
        });
        $crate::on_both_backends!($($rest)*);
    };
    (async fn $name:ident($backend:ident: Backend) $body:block $($rest:tt)*) => {
        $crate::on_both_backends!(@test $name, |$backend| $body);
        $crate::on_both_backends!($($rest)*);
    };
    (async fn $name:ident($app:ident, $configure:expr) $body:block $($rest:tt)*) => {
        $crate::on_both_backends!(@test $name, |backend| {
            let Some($app) = $crate::helpers::TestApp::spawn_with(backend, $configure).await else { return };
            $body
        });
        $crate::on_both_backends!($($rest)*);
    };
    (async fn $name:ident($app:ident) $body:block $($rest:tt)*) => {
        $crate::on_both_backends!(async fn $name($app, |_| {}) $body $($rest)*);
    };
    (@test $name:ident, |$backend:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($backend: $crate::helpers::Backend) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::helpers::Backend::Postgres).await
            }
        }
    };
}
