//! The real `onboard` binary: first start, logs, graceful shutdown, several nodes at once.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use axum::response::IntoResponse;
use serde_json::Value;

use crate::helpers::{Backend, TestDb};

/// A running `onboard serve` whose stdout and stderr lines are collected as they come.
struct Node {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    out_lines: Vec<String>,
    err_lines: Vec<String>,
}

impl Node {
    fn start(dir: &Path, database_url: Option<&str>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_onboard"));
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir)
            .env_remove("DATABASE_URL")
            .env_remove("ONBOARD_LOG")
            .env("ONBOARD_LOG__FORMAT", "json")
            .env("ONBOARD_LOG__FILTER", "debug,sqlx=info,hyper=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(url) = database_url {
            command.env("DATABASE_URL", url);
        }
        let mut child = command.spawn().expect("spawn onboard");
        let pipe = |reader: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = pipe(Box::new(child.stdout.take().unwrap()));
        let stderr = pipe(Box::new(child.stderr.take().unwrap()));
        Self { child, stdout, stderr, out_lines: Vec::new(), err_lines: Vec::new() }
    }

    fn drain(&mut self) {
        self.out_lines.extend(self.stdout.try_iter());
        self.err_lines.extend(self.stderr.try_iter());
    }

    /// Waits for the "listening" log line and returns the base URL.
    fn wait_listening(&mut self) -> String {
        for _ in 0..600 {
            self.drain();
            for line in &self.err_lines {
                if let Ok(event) = serde_json::from_str::<Value>(line)
                    && event["message"] == "listening"
                {
                    return format!("http://{}", event["addr"].as_str().unwrap());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain();
                panic!("onboard exited with {status}: {}", self.err_lines.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("onboard did not start: {}", self.err_lines.join("\n"));
    }

    fn printed(&self, label: &str) -> Option<String> {
        self.out_lines.iter().find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
    }

    /// SIGTERM, then the exit status once it has drained.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                self.drain();
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("onboard did not stop after SIGTERM");
    }
}

/// `POST /oauth/token` with client credentials; returns the access token.
async fn fetch_token(http: &reqwest::Client, base: &str, client_id: &str, secret: &str) -> String {
    let token: Value = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token["access_token"].as_str().expect("a token").to_owned()
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_serve_prints_credentials_that_work_and_logs_keep_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), None);
    let base = node.wait_listening();
    node.drain();
    let api_key = node.printed("API key").expect("API key printed");
    let client_id = node.printed("client id").expect("client id printed");
    let client_secret = node.printed("client secret").expect("client secret printed");
    assert!(dir.path().join("onboard.db").exists(), "the embedded database is created in the working directory");

    let http = crate::helpers::http_client();
    let access_token = fetch_token(&http, &base, &client_id, &client_secret).await;
    let whoami = http.get(format!("{base}/partner")).bearer_auth(&access_token).send().await.unwrap();
    assert_eq!(whoami.status(), 200);
    let by_key = http.get(format!("{base}/partner")).header("PartnerApiKey", &api_key).send().await.unwrap();
    assert_eq!(by_key.status(), 200);
    let bad = http.get(format!("{base}/partner")).header("PartnerApiKey", format!("{api_key}x")).send().await.unwrap();
    assert_eq!(bad.status(), 401);
    // Personal data in a URL must not reach the logs.
    let pii = http.get(format!("{base}/lookup/ana.maria@example.org?phone=%2B525521206703")).send().await.unwrap();
    assert_eq!(pii.status(), 404);

    let status = node.terminate();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");

    let logs = node.err_lines.join("\n");
    assert!(logs.contains(r#""message":"request""#), "requests are logged");
    assert!(logs.contains(r#""trace_id""#), "with their trace ids");
    assert!(logs.contains(r#""route":"/partner""#));
    for secret in [api_key.as_str(), &client_secret, &access_token, "ana.maria@example.org", "5521206703"] {
        assert!(!logs.contains(secret), "the logs contain a secret or PII: {secret}");
    }

    // A second start on the same database creates nothing new and prints no credentials.
    let mut again = Node::start(dir.path(), None);
    again.wait_listening();
    again.drain();
    assert!(again.printed("API key").is_none());
    assert!(again.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_migrate_once_and_both_serve() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut a = Node::start(dir.path(), Some(&db.url));
    let mut b = Node::start(dir.path(), Some(&db.url));
    let (url_a, url_b) = (a.wait_listening(), b.wait_listening());
    let http = crate::helpers::http_client();
    for url in [&url_a, &url_b] {
        assert_eq!(http.get(format!("{url}/readyz")).send().await.unwrap().status(), 200);
    }
    a.drain();
    b.drain();
    let banners = [&a, &b].iter().filter(|n| n.printed("API key").is_some()).count();
    assert_eq!(banners, 1, "exactly one node creates the sandbox partner");

    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let (applied, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT version) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(applied, distinct, "each migration applied once");
    assert_eq!(applied as usize, std::fs::read_dir("migrations/postgres").unwrap().count());
    let partners: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM partners").fetch_one(&mut conn).await.unwrap();
    assert_eq!(partners, 1);
    let current: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys WHERE is_current = 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(current, 1);
    conn.close().await.unwrap();

    // A token issued by one node is accepted by the other.
    let (banner_node, other) = if a.printed("API key").is_some() { (&a, &url_b) } else { (&b, &url_a) };
    let (id, secret) = (banner_node.printed("client id").unwrap(), banner_node.printed("client secret").unwrap());
    let issuing = if other == &url_a { &url_b } else { &url_a };
    let token = fetch_token(&http, issuing, &id, &secret).await;
    let whoami = http.get(format!("{other}/partner")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(whoami.status(), 200);

    // Seed 000 across nodes: 100 identical registrations spread over both make one user.
    let api_key = banner_node.printed("API key").unwrap();
    let body = serde_json::json!({"externalUserId": "two-nodes", "method": "PHONE_NUMBER", "identifier": "+524401234567", "type": "INDIVIDUAL"});
    let requests = (0..100).map(|i| {
        let url = format!("{}/partner/users", if i % 2 == 0 { &url_a } else { &url_b });
        let (http, key, body) = (http.clone(), api_key.clone(), body.clone());
        tokio::spawn(async move {
            let response = http.post(url).header("PartnerApiKey", key).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap()["userId"].to_string())
        })
    });
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for request in requests {
        let (status, id) = request.await.unwrap();
        assert!(status == 201 || status == 200, "{status}");
        created += usize::from(status == 201);
        ids.insert(id);
    }
    assert_eq!((created, ids.len()), (1, 1));
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE external_user_id = 'two-nodes'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(users, 1);

    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// Runs one `onboard` command on the SQLite database in `dir`; it must succeed. Returns stdout.
fn run_cli(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_onboard"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run onboard");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cli_creates_lists_and_rotates_partners() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| run_cli(dir.path(), args);
    let created: Value =
        serde_json::from_str(&run(&["partner", "create", "--name", "Acme Pay", "--environment", "live", "--json"]))
            .unwrap();
    assert_eq!(created["environment"], "live");
    assert!(created["apiKey"].as_str().unwrap().starts_with("onb_live_"));
    assert!(created["clientId"].as_str().unwrap().starts_with("cli_"));
    assert!(created["clientSecret"].as_str().unwrap().starts_with("cs_"));
    let id = created["partnerId"].as_i64().unwrap().to_string();

    let listed: Value = serde_json::from_str(&run(&["partner", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["name"], "Acme Pay");
    assert!(listed[0].get("apiKey").is_none(), "secrets are never listed");

    let rotated: Value =
        serde_json::from_str(&run(&["partner", "rotate-key", "--partner", &id, "--grace", "1h", "--json"])).unwrap();
    assert_ne!(rotated["apiKey"], created["apiKey"]);
    run(&["keys", "rotate"]);
    run(&["migrate"]);

    let bad = Command::new(env!("CARGO_BIN_EXE_onboard"))
        .args(["partner", "list"])
        .current_dir(dir.path())
        .env("ONBOARD_HTTP__MAX_BODY_BYTES", "many")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("max_body_bytes"), "a bad setting names its key");
}

/// The sanctions CLI on the shipped snapshot: load, the same load again, and the two reference
/// screenings; then a download from a base URL.
#[test]
fn sanctions_cli_loads_the_snapshot_and_screens() {
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ofac");
    let run = |args: &[&str]| run_cli(dir.path(), args);
    let loaded: Value =
        serde_json::from_str(&run(&["sanctions", "load", "--dir", data.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(loaded["created"], true);
    assert_eq!(loaded["list"]["counts"]["entries"], 14_965);
    assert_eq!(loaded["list"]["publishedOn"], "2024-05-03");
    let again: Value =
        serde_json::from_str(&run(&["sanctions", "load", "--dir", data.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(
        (again["created"].clone(), again["list"]["id"].clone()),
        (Value::Bool(false), loaded["list"]["id"].clone())
    );

    let maduro: Value = serde_json::from_str(&run(&[
        "sanctions",
        "screen",
        "--name",
        "Nicolas Maduro",
        "--dob",
        "1962-11-23",
        "--country",
        "VE",
        "--json",
    ]))
    .unwrap();
    let top = &maduro["matches"][0];
    assert_eq!(top["entityId"], 22790);
    assert_eq!(top["decision"], "match");
    assert!(top["reasons"].as_array().unwrap().len() >= 3, "{top}");
    let smith: Value = serde_json::from_str(&run(&[
        "sanctions",
        "screen",
        "--name",
        "John Smith",
        "--dob",
        "1980-01-01",
        "--country",
        "US",
        "--json",
    ]))
    .unwrap();
    assert!(smith["matches"].as_array().unwrap().iter().all(|m| m["decision"] != "match"), "{smith}");

    let token: Value =
        serde_json::from_str(&run(&["admin", "token", "create", "--name", "ci", "--role", "compliance", "--json"]))
            .unwrap();
    assert!(token["token"].as_str().unwrap().starts_with("onb_admin_"));
    assert!(!run(&["admin", "token", "list"]).contains(token["token"].as_str().unwrap()), "tokens are never listed");
    assert!(run(&["jobs", "stats"]).contains("sanctions.rescreen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sanctions_load_downloads_from_a_base_url() {
    use axum::http::header::LAST_MODIFIED;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ofac-small");
    let app = axum::Router::new().route(
        "/downloads/{file}",
        axum::routing::get(move |axum::extract::Path(file): axum::extract::Path<String>| {
            let fixture = fixture.clone();
            async move {
                match std::fs::read(fixture.join(&file)) {
                    Ok(bytes) if file.ends_with(".csv") => {
                        ([(LAST_MODIFIED, "Fri, 03 May 2024 14:00:00 GMT")], bytes).into_response()
                    }
                    _ => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/downloads", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let (path, url) = (dir.path().to_owned(), base.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_onboard"))
            .args(["sanctions", "load", "--url", &url, "--json"])
            .current_dir(path)
            .env_remove("DATABASE_URL")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let loaded: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(loaded["list"]["counts"]["entries"], 17);
    assert_eq!(loaded["list"]["publishedOn"], "2024-05-03");
    assert_eq!(loaded["list"]["source"], base);
}
