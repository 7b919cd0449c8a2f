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
        Self::start_with(dir, database_url, &[])
    }

    /// With extra `ONBOARD_*` settings in the environment.
    fn start_with(dir: &Path, database_url: Option<&str>, env: &[(&str, &str)]) -> Self {
        Self::spawn(Path::new(env!("CARGO_BIN_EXE_onboard")), dir, database_url, env)
    }

    /// `program serve` in `dir`.
    fn spawn(program: &Path, dir: &Path, database_url: Option<&str>, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(program);
        command.envs(env.iter().copied());
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

    /// `printed`, waiting (up to 2 s) for the line: stdout and stderr are separate pipes, so the
    /// "listening" log line can be read before the credentials printed ahead of it.
    fn wait_printed(&mut self, label: &str) -> Option<String> {
        for _ in 0..100 {
            self.drain();
            if let Some(value) = self.printed(label) {
                return Some(value);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
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
    let mut node = Node::start_with(dir.path(), None, &[("ONBOARD_MAIL__URL", "log")]);
    let base = node.wait_listening();
    node.drain();
    let api_key = node.wait_printed("API key").expect("API key printed");
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
    // A sign-up code mailed through the development `log` transport: masked in the log.
    let partner = node.printed("partner id").expect("partner id printed");
    let body = serde_json::json!({"email": "signup.logged@example.org", "password": "A9#bL8@z"});
    let step1 = http.post(format!("{base}/users")).header("partnerId", &partner).json(&body).send().await.unwrap();
    assert_eq!(step1.status(), 200);
    for _ in 0..100 {
        node.drain();
        if node.err_lines.iter().any(|l| l.contains("log transport")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let status = node.terminate();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");

    let logs = node.err_lines.join("\n");
    assert!(logs.contains(r#""message":"request""#), "requests are logged");
    assert!(logs.contains(r#""trace_id""#), "with their trace ids");
    assert!(logs.contains(r#""route":"/partner""#));
    assert!(logs.contains("log transport"), "the mail was logged");
    let secrets = [api_key.as_str(), &client_secret, &access_token, "ana.maria@example.org", "5521206703"];
    for secret in secrets.into_iter().chain(["code is 12345", "signup.logged@example.org"]) {
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

/// Runs one `onboard` command on the SQLite database in `dir` with extra environment; its output.
fn cli_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_onboard"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .expect("run onboard")
}

/// `onboard partner kyc` seals the secrets it is given; `onboard keys rewrap` moves every sealed
/// value (provider secrets and signing keys) to a new KEK, which alone opens them afterwards.
#[test]
fn cli_configures_kyc_and_rewraps_secrets_under_a_new_kek() {
    let dir = tempfile::tempdir().unwrap();
    let kek = |out: String| out.trim().to_owned();
    let (a, b) =
        (kek(run_cli(dir.path(), &["keys", "generate-kek"])), kek(run_cli(dir.path(), &["keys", "generate-kek"])));
    assert_ne!(a, b);
    let under_a = [("ONBOARD_SECRETS__KEK", a.as_str())];
    let created =
        cli_with(dir.path(), &["partner", "create", "--name", "Acme", "--environment", "live", "--json"], &under_a);
    let id = serde_json::from_slice::<Value>(&created.stdout).unwrap()["partnerId"].as_i64().unwrap().to_string();
    let kyc_args = ["partner", "kyc", "--partner", id.as_str(), "--level-name", "basic-kyc-level"];
    let secrets = [
        ("SUMSUB_APP_TOKEN", "sbx:cli-app-token-0123"),
        ("SUMSUB_SECRET_KEY", "cli-secret-key-0123"),
        ("SUMSUB_WEBHOOK_SECRET", "cli-webhook-secret-0123"),
    ];
    // A live partner cannot be given secrets without a KEK.
    let refused = cli_with(dir.path(), &kyc_args, &secrets);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("key-encryption key"));
    let with_a: Vec<(&str, &str)> = secrets.iter().copied().chain(under_a).collect();
    let configured = cli_with(dir.path(), &kyc_args, &with_a);
    assert!(configured.status.success(), "{}", String::from_utf8_lossy(&configured.stderr));
    let stripe = [
        ("STRIPE_SECRET_KEY", "sk_live_cli_0123456789abcdef"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_cli_0123456789abcdef"),
    ];
    let payments_args = ["partner", "payments", "--partner", id.as_str()];
    let test_key: Vec<(&str, &str)> =
        [("STRIPE_SECRET_KEY", "sk_test_cli_0123456789abcdef"), stripe[1]].into_iter().chain(under_a).collect();
    let refused = cli_with(dir.path(), &payments_args, &test_key);
    assert!(!refused.status.success(), "a live partner takes no test key");
    let with_a_stripe: Vec<(&str, &str)> = stripe.iter().copied().chain(under_a).collect();
    let configured = cli_with(dir.path(), &payments_args, &with_a_stripe);
    assert!(configured.status.success(), "{}", String::from_utf8_lossy(&configured.stderr));
    // Tiers: create prints the subscriptionDetailsId; list and archive find it.
    let plan_args = [
        "plans",
        "create",
        "--partner",
        id.as_str(),
        "--name",
        "Plus",
        "--price",
        "999",
        "--currency",
        "USD",
        "--interval",
        "month",
        "--trial-days",
        "14",
    ];
    let plan = cli_with(dir.path(), &plan_args, &under_a);
    let plan = String::from_utf8(plan.stdout).unwrap().trim().to_owned();
    assert!(plan.starts_with("plan:"), "{plan}");
    let listed = cli_with(dir.path(), &["plans", "list", "--partner", id.as_str(), "--json"], &under_a);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        (listed[0]["subscriptionDetailsId"].as_str(), listed[0]["amountDecimal"].as_str()),
        (Some(plan.as_str()), Some("9.99"))
    );
    let bad = cli_with(
        dir.path(),
        &[
            "plans",
            "create",
            "--partner",
            id.as_str(),
            "--name",
            "X",
            "--price",
            "1",
            "--currency",
            "XAU",
            "--interval",
            "month",
        ],
        &under_a,
    );
    assert!(!bad.status.success());
    let archived =
        cli_with(dir.path(), &["plans", "archive", "--partner", id.as_str(), plan.as_str(), "--json"], &under_a);
    assert!(serde_json::from_slice::<Value>(&archived.stdout).unwrap()["archivedAt"].is_string());
    let listed = cli_with(dir.path(), &["plans", "list", "--partner", id.as_str(), "--json"], &under_a);
    assert_eq!(serde_json::from_slice::<Value>(&listed.stdout).unwrap(), serde_json::json!([]));
    assert!(cli_with(dir.path(), &["keys", "rotate"], &under_a).status.success());
    // B alone cannot open what A sealed; B with A as the previous KEK moves everything.
    let only_b = [("ONBOARD_SECRETS__KEK", b.as_str())];
    assert!(!cli_with(dir.path(), &["keys", "rewrap"], &only_b).status.success());
    let previous = format!("[\"{a}\"]");
    let rotating = [("ONBOARD_SECRETS__KEK", b.as_str()), ("ONBOARD_SECRETS__PREVIOUS_KEKS", previous.as_str())];
    let moved = cli_with(dir.path(), &["keys", "rewrap"], &rotating);
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    assert!(String::from_utf8_lossy(&moved.stdout).starts_with("6 secrets resealed"), "{:?}", moved);
    let again = cli_with(dir.path(), &["keys", "rewrap"], &only_b);
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("0 secrets resealed"), "{:?}", again);
    let audit = String::from_utf8(cli_with(dir.path(), &["admin", "audit"], &only_b).stdout).unwrap();
    assert!(
        audit.contains("secrets.rewrap")
            && audit.contains("partner.kyc.configure")
            && audit.contains("partner.payments.configure")
            && audit.contains("plan.create"),
        "{audit}"
    );
    // Nothing of the secrets is in the database files.
    for name in ["onboard.db", "onboard.db-wal"] {
        let file = std::fs::read(dir.path().join(name)).unwrap_or_default();
        for (_, secret) in secrets.iter().chain(&stripe) {
            assert!(!file.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} in {name}");
        }
    }
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

/// Every list loads by `--url` from a server that publishes it as its owner does (OFAC's CSV
/// files under a base URL, the XML lists as one document each), then screens by list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sanctions_load_downloads_every_list_from_its_url() {
    use axum::http::header::LAST_MODIFIED;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).to_owned();
    let app = axum::Router::new().route(
        "/{dir}/{file}",
        axum::routing::get(move |axum::extract::Path((dir, file)): axum::extract::Path<(String, String)>| {
            let root = root.clone();
            async move {
                let folder = match dir.as_str() {
                    "downloads" => "tests/fixtures/ofac-small",
                    "consolidated" => "data/ofac-cons",
                    "un" => "tests/fixtures/un-small",
                    "eu" => "tests/fixtures/eu-small",
                    "uk" => "tests/fixtures/uk-small",
                    _ => return axum::http::StatusCode::NOT_FOUND.into_response(),
                };
                match std::fs::read(root.join(folder).join(&file)) {
                    Ok(bytes) => ([(LAST_MODIFIED, "Fri, 03 May 2024 14:00:00 GMT")], bytes).into_response(),
                    _ => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let cli = move |args: Vec<String>| {
        let path = path.clone();
        async move {
            let out = tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_onboard"))
                    .args(&args)
                    .current_dir(path)
                    .env_remove("DATABASE_URL")
                    .output()
            })
            .await
            .unwrap()
            .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let load = |source: &str, url: String| {
        ["sanctions", "load", "--source", source, "--url", &url, "--json"].map(str::to_owned).to_vec()
    };
    // (list, URL, entries, publication date: Last-Modified for OFAC's files, the document's own otherwise)
    for (source, url, entries, published) in [
        ("ofac-sdn", format!("{server}/downloads"), 17, "2024-05-03"),
        ("ofac-cons", format!("{server}/consolidated/"), 442, "2024-05-03"),
        ("un", format!("{server}/un/consolidated.xml"), 12, "2026-02-27"),
        ("eu", format!("{server}/eu/eu_fsf.xml"), 3, "2026-08-05"),
        ("uk", format!("{server}/uk/UK_Sanctions_List.xml"), 5, "2026-09-10"),
    ] {
        let (ok, stdout, stderr) = cli(load(source, url.clone())).await;
        assert!(ok, "{source}: {stderr}");
        let loaded: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(loaded["list"]["list"], source);
        assert_eq!(loaded["list"]["counts"]["entries"], entries, "{source}");
        assert_eq!(loaded["list"]["publishedOn"], published, "{source}");
        assert_eq!(loaded["list"]["source"], url);
    }
    let (_, status, _) = cli(["sanctions", "status", "--json"].map(str::to_owned).to_vec()).await;
    let status: Value = serde_json::from_str(&status).unwrap();
    let lists: Vec<&str> = status.as_array().unwrap().iter().map(|v| v["list"].as_str().unwrap()).collect();
    assert_eq!(lists, ["ofac-sdn", "ofac-cons", "un", "eu", "uk"]);

    let screen = |extra: &[&str]| {
        let mut args = ["sanctions", "screen", "--name", "Doku Umarov", "--json"].map(str::to_owned).to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let (ok, found, _) = cli(screen(&[])).await;
    assert!(ok);
    let found: Value = serde_json::from_str(&found).unwrap();
    assert_eq!(
        (found["matches"][0]["list"].as_str(), found["matches"][0]["entityId"].as_i64()),
        (Some("un"), Some(2960872))
    );
    let (ok, narrow, _) = cli(screen(&["--lists", "ofac-sdn,eu"])).await;
    assert!(ok);
    let narrow: Value = serde_json::from_str(&narrow).unwrap();
    assert!(narrow["matches"].as_array().unwrap().iter().all(|m| m["list"] != "un"), "{narrow}");

    // Clear refusals, and nothing loaded by them.
    for (args, says) in [
        (load("un", format!("{server}/un/missing.xml")), "404"),
        (load("eu", format!("{server}/un/consolidated.xml")), "no entries"),
        (["sanctions", "load", "--source", "un", "--builtin"].map(str::to_owned).to_vec(), "OFAC SDN list only"),
        (screen(&["--lists", "ofac"]), "not a list"),
        (["partner", "sanctions-lists", "--partner", "1", "--lists", "un"].map(str::to_owned).to_vec(), "no partner 1"),
    ] {
        let (ok, _, stderr) = cli(args.clone()).await;
        assert!(!ok && stderr.contains(says), "{args:?}: {stderr}");
    }
    let (_, status_after, _) = cli(["sanctions", "status", "--json"].map(str::to_owned).to_vec()).await;
    assert_eq!(serde_json::from_str::<Value>(&status_after).unwrap(), status);

    let (ok, created, _) = cli(["partner", "create", "--name", "Lists", "--json"].map(str::to_owned).to_vec()).await;
    assert!(ok);
    let partner = serde_json::from_str::<Value>(&created).unwrap()["partnerId"].to_string();
    let (ok, said, stderr) = cli(["partner", "sanctions-lists", "--partner", &partner, "--lists", "un,ofac-sdn"]
        .map(str::to_owned)
        .to_vec())
    .await;
    assert!(ok, "{stderr}");
    assert!(said.contains("screened against ofac-sdn,un"), "{said}");
}

/// Settings for nodes that run the validators: the small fixture list, fast polling, short leases.
fn validating_env() -> Vec<(&'static str, String)> {
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ofac-small");
    vec![
        ("ONBOARD_SANCTIONS__AUTOLOAD_DIR", list.display().to_string()),
        ("ONBOARD_JOBS__POLL_INTERVAL_MS", "50".into()),
        ("ONBOARD_JOBS__LEASE_SECS", "2".into()),
        ("ONBOARD_LOG__FILTER", "info".into()),
        ("ONBOARD_WEBHOOKS__ALLOW_LOOPBACK", "true".into()),
    ]
}

/// Subscribes the partner of `key` to every event at `url`.
async fn add_endpoint(http: &reqwest::Client, base: &str, key: &str, url: &str) {
    let response = http
        .post(format!("{base}/partner/webhooks"))
        .header("PartnerApiKey", key)
        .json(&serde_json::json!({ "url": url }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

/// Every event arrived once and only once; how many.
fn each_once(received: &[crate::webhooks::Received]) -> usize {
    let mut ids: Vec<&str> = received.iter().map(|r| r.id()).collect();
    ids.sort();
    let all = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), all, "an event was delivered twice");
    all
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn register_v2(http: &reqwest::Client, base: &str, key: &str, n: u32) -> String {
    let body = crate::prospects::prospect(n, serde_json::json!({}));
    let response =
        http.post(format!("{base}/register-user-v2")).header("PartnerApiKey", key).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["userId"].as_str().unwrap().to_owned()
}

/// Polls until the user's status is final (bounded).
async fn final_status(http: &reqwest::Client, base: &str, key: &str, user: &str) -> String {
    for _ in 0..1200 {
        let answer: Value = http
            .post(format!("{base}/getUserTokenV2"))
            .header("PartnerApiKey", key)
            .json(&serde_json::json!({ "userId": user }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = answer["status"].as_str().unwrap();
        if status != "UpgradeInProgress" && status != "AccountUpgradeInProgress" {
            return format!("{status}/{}", answer["statusDetail"].as_str().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{user} never reached a final status");
}

/// A job held (leased for ten minutes) by node `id`, as if its worker was running it.
async fn job_held_by(conn: &mut sqlx::PgConnection, id: &str) -> i64 {
    let now = onboard::domain::now_ms();
    let payload = r#"{"template":"account_exists","to":"ana@example.org","partner":"Test"}"#;
    sqlx::query_scalar(
        "INSERT INTO jobs (kind, payload, state, attempts, max_attempts, run_at, lease_until, worker, created_at, updated_at)
         VALUES ('mail.send', $1, 'running', 1, 5, $2, $3, $4, $2, $2) RETURNING id",
    )
    .bind(payload)
    .bind(now)
    .bind(now + 600_000)
    .bind(id)
    .fetch_one(conn)
    .await
    .unwrap()
}

async fn node_of(conn: &mut sqlx::PgConnection, pid: u32) -> String {
    sqlx::query_scalar("SELECT id FROM nodes WHERE pid = $1 AND stopped_at IS NULL ORDER BY started_at DESC LIMIT 1")
        .bind(i64::from(pid))
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Waits (at most `secs`) for the job to be done; the leases here are ten minutes.
async fn done_within(conn: &mut sqlx::PgConnection, job: i64, secs: u64) -> bool {
    for _ in 0..secs * 10 {
        let state: String =
            sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1").bind(job).fetch_one(&mut *conn).await.unwrap();
        if state == "done" {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A dead node's job leases are released long before they run out: by the other node when its
/// heartbeats stop, and by a node restarted on the same host at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_leases_are_released_by_its_peers_and_by_its_restart() {
    use sqlx::Connection;
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("ONBOARD_MAIL__URL", "log"),
        ("ONBOARD_NODE__HEARTBEAT_SECS", "1"),
        ("ONBOARD_NODE__DEAD_AFTER_SECS", "3"),
        ("ONBOARD_JOBS__POLL_INTERVAL_MS", "100"),
        ("ONBOARD_SANCTIONS__BUILTIN_SNAPSHOT", "false"),
    ];
    let mut a = Node::start_with(dir.path(), Some(&db.url), &env);
    a.wait_listening();
    let mut b = Node::start_with(dir.path(), Some(&db.url), &env);
    b.wait_listening();
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();

    // A dies holding a job: B notices the silence and releases it; B's workers run it.
    let a_id = node_of(&mut conn, a.child.id()).await;
    let held = job_held_by(&mut conn, &a_id).await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    assert!(done_within(&mut conn, held, 20).await, "released after the heartbeat stopped, not after the lease");

    // B dies holding a job; a node started on this host (which would wait ten minutes for
    // silence) finds B's process gone and releases its claims at start.
    let b_id = node_of(&mut conn, b.child.id()).await;
    let held = job_held_by(&mut conn, &b_id).await;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let mut patient = env.to_vec();
    patient.retain(|(k, _)| *k != "ONBOARD_NODE__DEAD_AFTER_SECS");
    patient.push(("ONBOARD_NODE__DEAD_AFTER_SECS", "600"));
    let mut c = Node::start_with(dir.path(), Some(&db.url), &patient);
    c.wait_listening();
    assert!(done_within(&mut conn, held, 10).await, "released by the restart at once");

    let released: Vec<(String, bool)> =
        sqlx::query_as("SELECT id, reaped_at IS NOT NULL FROM nodes WHERE id IN ($1, $2) ORDER BY started_at")
            .bind(&a_id)
            .bind(&b_id)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(released, vec![(a_id, true), (b_id, true)]);
    let c_id = node_of(&mut conn, c.child.id()).await;
    assert!(c.terminate().success());
    let stopped: bool = sqlx::query_scalar("SELECT stopped_at IS NOT NULL FROM nodes WHERE id = $1")
        .bind(&c_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(stopped, "a clean stop marks the node stopped");
    c.drain();
    assert!(
        c.err_lines.iter().any(|l| l.contains("released a dead node's claims") && l.contains("restarted on this host"))
    );
}

/// `serve` over HTTPS: the "listening" line says so, and SIGHUP loads a new certificate (the file
/// check is set too slow to be what does it here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_tls_certificate() {
    use crate::tls::{install, issue, trusting};
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (issue("first"), issue("second"));
    install(dir.path(), &first);
    let (cert, key) = (dir.path().join("chain.pem"), dir.path().join("key.pem"));
    let env = [
        ("ONBOARD_TLS__CERT_FILE", cert.to_str().unwrap()),
        ("ONBOARD_TLS__KEY_FILE", key.to_str().unwrap()),
        ("ONBOARD_TLS__RELOAD_CHECK_SECS", "3600"),
        ("ONBOARD_SANCTIONS__BUILTIN_SNAPSHOT", "false"),
    ];
    let mut node = Node::start_with(dir.path(), None, &env);
    let base = node.wait_listening().replace("http://", "https://");
    assert!(node.err_lines.iter().any(|l| l.contains(r#""scheme":"https""#)), "{:?}", node.err_lines);
    let healthz = format!("{base}/healthz");
    assert_eq!(trusting(&first.authority, false).get(&healthz).send().await.unwrap().status(), 200);

    install(dir.path(), &second);
    let pid = node.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let mut swapped = false;
    for _ in 0..50 {
        if trusting(&second.authority, false).get(&healthz).send().await.is_ok() {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swapped, "SIGHUP reloads the certificate");
    assert!(node.child.try_wait().unwrap().is_none(), "SIGHUP does not stop the server");
    assert!(node.terminate().success());
}

/// The binary copied alone into an empty directory (no `data/`, no settings): it serves,
/// `/readyz` says a list is loaded, and registrations are screened against the snapshot built
/// into it and reach their final status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_alone_in_an_empty_directory_screens_with_its_builtin_list() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("onboard");
    std::fs::copy(env!("CARGO_BIN_EXE_onboard"), &binary).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing but the binary");
    let http = crate::helpers::http_client();
    let mut node = Node::spawn(&binary, dir.path(), None, &[("ONBOARD_LOG__FILTER", "info")]);
    let url = node.wait_listening();
    let key = node.wait_printed("API key").expect("first start prints the API key");
    let ready: Value = http.get(format!("{url}/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!((ready["status"].as_str(), ready["sanctions"].as_str()), (Some("ready"), Some("loaded")), "{ready}");

    let clear = register_v2(&http, &url, &key, 0).await;
    let listed = crate::prospects::prospect(
        1,
        serde_json::json!({"firstName": "Daniel", "middleName": null, "lastName": "Moreno", "secondLastName": null, "dateOfBirth": "1972-10-12"}),
    );
    let response =
        http.post(format!("{url}/register-user-v2")).header("PartnerApiKey", &key).json(&listed).send().await.unwrap();
    let listed: Value = response.json().await.unwrap();
    let listed = listed["userId"].as_str().unwrap();
    assert_eq!(final_status(&http, &url, &key, &clear).await, "Completed/None");
    assert_eq!(final_status(&http, &url, &key, listed).await, "UpgradeFailed/OfacFailed");
    assert!(node.terminate().success());
    node.drain();
    let source = node.err_lines.iter().find(|l| l.contains("sanctions list loaded on first start"));
    assert!(source.is_some_and(|l| l.contains("builtin:2024-05-03")), "{:?}", node.err_lines);
}

/// With no list at all, `/readyz` says so (still 200: the routes that do not screen serve), and
/// the sanctions checks that cannot run are reported stuck once they wait longer than
/// `jobs.stuck_after_secs`: by `/metrics` and by `onboard jobs stats`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_list_readiness_says_so_and_waiting_checks_are_reported_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let http = crate::helpers::http_client();
    let env = [
        ("ONBOARD_SANCTIONS__BUILTIN_SNAPSHOT", "false"),
        ("ONBOARD_JOBS__STUCK_AFTER_SECS", "1"),
        ("ONBOARD_JOBS__POLL_INTERVAL_MS", "50"),
        ("ONBOARD_LOG__FILTER", "info"),
    ];
    let mut node = Node::start_with(dir.path(), None, &env);
    let url = node.wait_listening();
    let key = node.wait_printed("API key").expect("first start prints the API key");
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!((ready["status"].as_str(), ready["sanctions"].as_str()), (Some("degraded"), Some("missing")), "{ready}");
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sanctions_list_loaded 0"), "{metrics}");

    register_v2(&http, &url, &key, 0).await;
    let mut reported = false;
    for _ in 0..100 {
        let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        if metrics.contains(r#"jobs_stuck{kind="cip.sanctions"} 1"#) {
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(reported, "the waiting sanctions check is reported stuck");
    let stats = cli_with(dir.path(), &["jobs", "stats"], &env);
    let stats = String::from_utf8_lossy(&stats.stdout);
    let line = stats.lines().find(|l| l.starts_with("cip.sanctions")).expect("a cip.sanctions line");
    assert!(line.ends_with("STUCK"), "{stats}");
    assert!(!stats.lines().any(|l| l.starts_with("cip.personal") && l.ends_with("STUCK")), "{stats}");
    assert!(node.terminate().success());
    node.drain();
    assert!(node.err_lines.iter().any(|l| l.contains("jobs.stuck_after_secs") && l.contains("cip.sanctions")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_registrations_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let http = crate::helpers::http_client();
    let env = validating_env();

    // A node that accepts but runs no jobs, killed with SIGKILL: the work is only in the database.
    let mut no_workers = env_refs(&env);
    no_workers.push(("ONBOARD_JOBS__ENABLED", "false"));
    let mut a = Node::start_with(dir.path(), None, &no_workers);
    let url = a.wait_listening();
    a.drain();
    let key = a.wait_printed("API key").expect("first start prints the API key");
    let mut users = Vec::new();
    for n in 0..20 {
        users.push(register_v2(&http, &url, &key, n).await);
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    // A node with workers, killed while it is validating a burst (its leases then expire).
    let mut b = Node::start_with(dir.path(), None, &env_refs(&env));
    let url = b.wait_listening();
    for n in 20..60 {
        users.push(register_v2(&http, &url, &key, n).await);
    }
    b.child.kill().unwrap();
    b.child.wait().unwrap();

    // On restart every accepted registration reaches its final status.
    let mut c = Node::start_with(dir.path(), None, &env_refs(&env));
    let url = c.wait_listening();
    for user in &users {
        assert_eq!(final_status(&http, &url, &key, user).await, "Completed/None", "{user}");
    }
    assert!(c.terminate().success());
    let db = format!("sqlite://{}", dir.path().join("onboard.db").display());
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
    let (checks, users_checked): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT user_id) FROM cip_checks").fetch_one(&mut conn).await.unwrap();
    assert_eq!((checks, users_checked), (5 * users.len() as i64, users.len() as i64));
    let unfinished: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state <> 'done'").fetch_one(&mut conn).await.unwrap();
    assert_eq!(unfinished, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_webhook_events_are_delivered_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let http = crate::helpers::http_client();
    let receiver = crate::webhooks::Receiver::ok().await;
    let env = validating_env();

    // A node that commits events but delivers nothing, killed with SIGKILL.
    let mut no_workers = env_refs(&env);
    no_workers.push(("ONBOARD_JOBS__ENABLED", "false"));
    let mut a = Node::start_with(dir.path(), None, &no_workers);
    let url = a.wait_listening();
    a.drain();
    let key = a.wait_printed("API key").expect("first start prints the API key");
    add_endpoint(&http, &url, &key, &receiver.url).await;
    for n in 0..10 {
        register_v2(&http, &url, &key, n).await;
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    assert!(receiver.received().is_empty());

    // After a restart every committed event arrives, once.
    let mut b = Node::start_with(dir.path(), None, &env_refs(&env));
    let _ = b.wait_listening();
    let db = format!("sqlite://{}", dir.path().join("onboard.db").display());
    let created = receiver
        .until("ten user.created", |rs| rs.iter().filter(|r| r.event_type() == "user.created").count() == 10)
        .await;
    assert!(created.len() >= 10);
    let events = loop {
        let events = crate::helpers::count(&db, "SELECT COUNT(*) FROM webhook_events").await;
        let pending =
            crate::helpers::count(&db, "SELECT COUNT(*) FROM jobs WHERE kind = 'webhook.deliver' AND state <> 'done'")
                .await;
        if pending == 0 {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(b.terminate().success());
    assert_eq!(each_once(&receiver.received()) as i64, events);
}

/// Sums a Prometheus counter over the series whose labels contain `filter`.
fn counter_sum(metrics: &str, name: &str, filter: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_validate_a_burst_of_registrations_exactly_once() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    const USERS: u32 = 1000;
    let dir = tempfile::tempdir().unwrap();
    // No node dies here, so a long lease: with two seconds, a delivery slowed past its lease on a
    // loaded CI machine was retried and reached the receiver twice. That is at-least-once working
    // as documented, but this test asserts that a healthy cluster does each thing once.
    let mut env = validating_env();
    env.retain(|(k, _)| *k != "ONBOARD_JOBS__LEASE_SECS");
    env.push(("ONBOARD_JOBS__LEASE_SECS", "30".into()));
    let mut a = Node::start_with(dir.path(), Some(&db.url), &env_refs(&env));
    let mut b = Node::start_with(dir.path(), Some(&db.url), &env_refs(&env));
    let (url_a, url_b) = (a.wait_listening(), b.wait_listening());
    a.drain();
    b.drain();
    let key = a.printed("API key").or_else(|| b.printed("API key")).unwrap();
    let http = crate::helpers::http_client();
    let receiver = crate::webhooks::Receiver::ok().await;
    add_endpoint(&http, &url_a, &key, &receiver.url).await;

    let started = std::time::Instant::now();
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let requests: Vec<_> = (0..USERS)
        .map(|n| {
            let base = if n % 2 == 0 { url_a.clone() } else { url_b.clone() };
            let (http, key, semaphore) = (http.clone(), key.clone(), semaphore.clone());
            tokio::spawn(async move {
                let _permit = semaphore.acquire().await.unwrap();
                register_v2(&http, &base, &key, n).await
            })
        })
        .collect();
    let mut users = Vec::new();
    for request in requests {
        users.push(request.await.unwrap());
    }
    let accepted = started.elapsed();

    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for _ in 0..1200 {
        let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE cip_status = 'Completed'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if done == i64::from(USERS) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{USERS} registrations accepted in {accepted:?}, all completed after {:?}", started.elapsed());
    let completed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE cip_status = 'Completed'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(completed, i64::from(USERS));
    // Every job claimed once (a second claim would count a second attempt) and done.
    let (jobs, first_try): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE attempts = 1 AND state = 'done') FROM jobs WHERE kind LIKE 'cip.%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((jobs, first_try), (6 * i64::from(USERS), 6 * i64::from(USERS)));
    let checks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cip_checks").fetch_one(&mut conn).await.unwrap();
    assert_eq!(checks, 5 * i64::from(USERS));
    // Both nodes deliver webhooks: each event once, each delivery claimed once.
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events").fetch_one(&mut conn).await.unwrap();
    assert!(events >= 3 * i64::from(USERS), "{events} events");
    receiver.until("every event", |rs| rs.len() as i64 >= events).await;
    assert_eq!(each_once(&receiver.received()) as i64, events);
    // The receiver has a request before its sender records the answer: wait for those last
    // completions (a second attempt would never make `first_try` reach `events`).
    let mut counts = (0, 0);
    for _ in 0..200 {
        counts = sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE attempts = 1 AND state = 'done') FROM jobs WHERE kind = 'webhook.deliver'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if counts.1 == events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts, (events, events));
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM user_events").fetch_one(&mut conn).await.unwrap();
    assert_eq!(events, 3 * i64::from(USERS), "accepted, validated, opened: once each");
    // The handlers themselves ran 6 × USERS times across both nodes, and both nodes took part.
    let mut runs = Vec::new();
    for url in [&url_a, &url_b] {
        let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        runs.push(counter_sum(&metrics, "jobs_finished_total{", "kind=\"cip."));
    }
    assert_eq!(runs.iter().sum::<f64>(), f64::from(6 * USERS), "{runs:?}");
    assert!(runs.iter().all(|r| *r > 0.0), "both nodes ran validators: {runs:?}");
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// `kill -9` under `POST /User` load, with and without `Idempotency-Key`, on both backends:
/// every user acknowledged with a 201 is there after the restart, and repeating a keyed request
/// answers the stored 201 (same id, `Idempotent-Replayed`) instead of creating another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => match TestDb::new(backend).await {
                Some(db) => Some(db),
                None => continue,
            },
        };
        let url = db.as_ref().map(|db| db.url.clone());
        let dir = tempfile::tempdir().unwrap();
        let mut node = Node::start(dir.path(), url.as_deref());
        let base = node.wait_listening();
        let (client_id, secret) = (node.wait_printed("client id").unwrap(), node.printed("client secret").unwrap());
        let partner: i64 = node.printed("partner id").unwrap().parse().unwrap();
        let http = crate::helpers::http_client();
        let token = fetch_token(&http, &base, &client_id, &secret).await;

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut load = tokio::task::JoinSet::new();
        for worker in 0..32 {
            let (http, base, token, stop) = (http.clone(), base.clone(), token.clone(), stop.clone());
            load.spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let key = (worker % 2 == 0).then(|| format!("kill-{worker}-{n}"));
                    let body =
                        serde_json::json!({"merchantId": partner, "email": format!("u{worker}.{n}@example.org")});
                    let mut request = http.post(format!("{base}/User")).bearer_auth(&token).json(&body);
                    if let Some(key) = &key {
                        request = request.header("Idempotency-Key", key);
                    }
                    let Ok(response) = request.send().await else { break };
                    if response.status() == 201 {
                        let Ok(created) = response.json::<Value>().await else { break };
                        acknowledged.push((created["id"].as_i64().unwrap(), key, body));
                    }
                }
                acknowledged
            });
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        node.child.kill().expect("SIGKILL");
        node.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acknowledged = Vec::new();
        while let Some(done) = load.join_next().await {
            acknowledged.extend(done.unwrap());
        }
        assert!(acknowledged.len() > 50, "{backend:?}: only {} acknowledged before the kill", acknowledged.len());

        let mut restarted = Node::start(dir.path(), url.as_deref());
        let base = restarted.wait_listening();
        let token = fetch_token(&http, &base, &client_id, &secret).await;
        for (id, key, body) in &acknowledged {
            let stored = http.get(format!("{base}/User/{id}")).bearer_auth(&token).send().await.unwrap();
            assert_eq!(stored.status(), 200, "{backend:?}: acknowledged user {id} lost");
            if let Some(key) = key {
                let replay = http
                    .post(format!("{base}/User"))
                    .bearer_auth(&token)
                    .header("Idempotency-Key", key)
                    .json(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(replay.status(), 201, "{backend:?}: replay of {key}");
                assert_eq!(replay.headers()["idempotent-replayed"], "true");
                let replayed: Value = replay.json().await.unwrap();
                assert_eq!(replayed["id"].as_i64(), Some(*id), "{backend:?}: {key} answered another user");
            }
        }
        eprintln!("{backend:?}: {} acknowledged before kill -9, 0 lost", acknowledged.len());
        assert!(restarted.terminate().success());
    }
}

/// Sends `n` copies of one request, spread round-robin over `nodes`, at most 200 at a time;
/// returns each answer's status and body.
async fn fire(
    http: &reqwest::Client,
    nodes: &[String],
    n: usize,
    build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
) -> Vec<(u16, Value)> {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..n {
        let request = build(http, &nodes[i % nodes.len()]);
        let gate = gate.clone();
        requests.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let response = request.send().await.expect("the node answers");
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or_default())
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = requests.join_next().await {
        answers.push(answer.unwrap());
    }
    answers
}

fn statuses(answers: &[(u16, Value)]) -> std::collections::BTreeMap<u16, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for (status, _) in answers {
        *counts.entry(*status).or_default() += 1;
    }
    counts
}

/// Three nodes on one PostgreSQL database, 1,000 concurrent identical requests each: seed 000's
/// registration, seed 001 with one shared `Idempotency-Key`, seed 002's registration and sign-up
/// step 2 each make exactly one record, whatever node answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_make_one_record_of_a_thousand_identical_requests() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut first = Node::start(dir.path(), Some(&db.url));
    let mut nodes = vec![first.wait_listening()];
    let api_key = first.wait_printed("API key").unwrap();
    let (client_id, secret) = (first.printed("client id").unwrap(), first.printed("client secret").unwrap());
    let partner = first.printed("partner id").unwrap();
    let mut others: Vec<Node> = (0..2).map(|_| Node::start(dir.path(), Some(&db.url))).collect();
    nodes.extend(others.iter_mut().map(Node::wait_listening));
    let http = crate::helpers::http_client();
    let token = fetch_token(&http, &nodes[0], &client_id, &secret).await;
    let count = |sql: &'static str| crate::helpers::count(&db.url, sql);

    let seed_000 = serde_json::json!({"externalUserId": "three-nodes", "type": "INDIVIDUAL"});
    let answers = fire(&http, &nodes, 1000, |http, node| {
        http.post(format!("{node}/partner/users")).header("PartnerApiKey", &api_key).json(&seed_000)
    })
    .await;
    assert_eq!(statuses(&answers).get(&201), Some(&1), "seed 000: {:?}", statuses(&answers));
    eprintln!("seed 000 over three nodes: {:?}", statuses(&answers));
    assert!(answers.iter().all(|(s, _)| [200, 201].contains(s)), "seed 000: {:?}", statuses(&answers));
    assert_eq!(count("SELECT COUNT(*) FROM users WHERE external_user_id = 'three-nodes'").await, 1);

    let seed_001 =
        serde_json::json!({"merchantId": partner.parse::<i64>().unwrap(), "email": "shared.key@example.org"});
    let answers = fire(&http, &nodes, 1000, |http, node| {
        http.post(format!("{node}/User"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "one-shared-key")
            .json(&seed_001)
    })
    .await;
    assert!(answers.iter().all(|(s, _)| [201, 409].contains(s)), "seed 001: {:?}", statuses(&answers));
    let ids: std::collections::HashSet<_> =
        answers.iter().filter(|(s, _)| *s == 201).map(|(_, b)| b["id"].clone()).collect();
    assert_eq!(ids.len(), 1, "seed 001: every 201 is the same user");
    assert_eq!(count("SELECT COUNT(*) FROM users WHERE email = 'shared.key@example.org'").await, 1);

    let seed_002 = serde_json::json!({"firstName": "Ana", "lastName": "Hernández", "dateOfBirth": "1990-05-17",
        "email": "three.nodes@correo.mx", "phoneNumber": "+5215521206703", "country": "MX", "state": "MX-ROO"});
    let answers = fire(&http, &nodes, 1000, |http, node| {
        http.post(format!("{node}/register-user-v2")).header("PartnerApiKey", &api_key).json(&seed_002)
    })
    .await;
    assert_eq!(statuses(&answers).get(&200), Some(&1), "seed 002: {:?}", statuses(&answers));
    assert!(answers.iter().all(|(s, _)| [200, 409].contains(s)), "seed 002: {:?}", statuses(&answers));
    assert_eq!(count("SELECT COUNT(*) FROM users WHERE email = 'three.nodes@correo.mx'").await, 1);

    // Sign-up: step 1 once, then step 2 a thousand times. Most are turned away by the per-address
    // limit (429) or the full hashing queue (503); those that get through all sign in the one user
    // the first of them created (a repeated step 2 is a new session of it).
    let step_1 = serde_json::json!({"email": "three.nodes@example.com", "password": "A9#bL8@zQ"});
    let started =
        http.post(format!("{}/users", nodes[0])).header("partnerId", &partner).json(&step_1).send().await.unwrap();
    assert_eq!(started.status(), 200);
    let mut step_2 = step_1;
    step_2["emailConfirmCode"] = "12345".into();
    let answers = fire(&http, &nodes, 1000, |http, node| {
        http.post(format!("{node}/users")).header("partnerId", &partner).json(&step_2)
    })
    .await;
    assert!(answers.iter().all(|(s, _)| [200, 400, 409, 429, 503].contains(s)), "sign-up: {:?}", statuses(&answers));
    let users: std::collections::HashSet<_> =
        answers.iter().filter(|(s, _)| *s == 200).map(|(_, b)| b["user_id"].clone()).collect();
    assert_eq!(users.len(), 1, "sign-up: every 200 signs in the same user: {:?}", statuses(&answers));
    assert_eq!(count("SELECT COUNT(*) FROM users WHERE email = 'three.nodes@example.com'").await, 1);

    for node in std::iter::once(&mut first).chain(others.iter_mut()) {
        assert!(node.terminate().success());
    }
}

/// A PostgreSQL cluster of the test's own (`initdb` on a temporary directory and port, run as the
/// `postgres` user), so that it can be stopped under load without touching the shared server.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

impl Cluster {
    /// `None` where there is no PostgreSQL installation or no `postgres` user to run it as.
    fn create() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .max()?;
        let dir = tempfile::tempdir().ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let as_postgres = |args: &[&str]| Command::new("runuser").args(["-u", "postgres", "--"]).args(args).output();
        Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()).status().ok()?.success().then_some(())?;
        let data = dir.path().join("data");
        let initdb = bin.join("initdb");
        let created = as_postgres(&[initdb.to_str()?, "-D", data.to_str()?, "-A", "trust", "-U", "postgres"]).ok()?;
        created.status.success().then_some(Self { dir, port, bin })
    }

    fn pg_ctl(&self, args: &[&str]) {
        assert!(self.try_pg_ctl(args), "pg_ctl {args:?}");
    }

    /// `pg_ctl` on this cluster, as `postgres`, waiting for the action to finish.
    fn try_pg_ctl(&self, args: &[&str]) -> bool {
        let data = self.dir.path().join("data");
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let pg_ctl = self.bin.join("pg_ctl");
        let (pg_ctl, data) = (pg_ctl.to_str().unwrap(), data.to_str().unwrap());
        Command::new("runuser")
            .args(["-u", "postgres", "--", pg_ctl, "-D", data, "-o", &options, "-w"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.try_pg_ctl(&["-m", "immediate", "stop"]);
    }
}

/// The database stops under `POST /User` load: every answer meanwhile is a 201 or a 503 with
/// `Retry-After` (never a 500), the service takes writes again once the database is back, and
/// nothing it acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopping_under_load_is_a_503_and_service_resumes() {
    let Some(cluster) = Cluster::create() else {
        assert!(!crate::helpers::in_ci(), "CI needs PostgreSQL's initdb and a postgres user");
        eprintln!("skipping: no PostgreSQL installation to start a cluster of the test's own");
        return;
    };
    cluster.pg_ctl(&["start"]);
    let dir = tempfile::tempdir().unwrap();
    // Requests wait up to a second for a connection, then answer 503: the outage outlasts that.
    let mut node = Node::start_with(dir.path(), Some(&cluster.url()), &[("ONBOARD_DB__ACQUIRE_TIMEOUT_MS", "1000")]);
    let base = node.wait_listening();
    let (client_id, secret) = (node.wait_printed("client id").unwrap(), node.printed("client secret").unwrap());
    let partner: i64 = node.printed("partner id").unwrap().parse().unwrap();
    let http = crate::helpers::http_client();
    let token = fetch_token(&http, &base, &client_id, &secret).await;

    let phase = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (http, base, token, phase) = (http.clone(), base.clone(), token.clone(), phase.clone());
        load.spawn(async move {
            let (mut acknowledged, mut answers) = (Vec::new(), std::collections::BTreeMap::<u16, usize>::new());
            for n in 0.. {
                if phase.load(std::sync::atomic::Ordering::Relaxed) == 3 {
                    break;
                }
                let body = serde_json::json!({"merchantId": partner, "email": format!("w{worker}.{n}@example.org")});
                let response = http.post(format!("{base}/User")).bearer_auth(&token).json(&body).send().await.unwrap();
                let status = response.status().as_u16();
                *answers.entry(status).or_default() += 1;
                match status {
                    201 => acknowledged.push(response.json::<Value>().await.unwrap()["id"].as_i64().unwrap()),
                    503 => {
                        assert!(response.headers().contains_key("retry-after"), "a 503 says when to retry");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => panic!("{other}: {}", response.text().await.unwrap()),
                }
            }
            (acknowledged, answers)
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.pg_ctl(&["-m", "immediate", "stop"]);
    phase.store(1, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.pg_ctl(&["start"]);
    phase.store(2, std::sync::atomic::Ordering::Relaxed);
    // Writes are taken again within seconds of the database's return.
    let body = serde_json::json!({"merchantId": partner, "email": null});
    let mut resumed = false;
    for _ in 0..100 {
        let response = http.post(format!("{base}/User")).bearer_auth(&token).json(&body).send().await.unwrap();
        if response.status() == 201 {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    phase.store(3, std::sync::atomic::Ordering::Relaxed);
    let (mut acknowledged, mut answers) = (Vec::new(), std::collections::BTreeMap::<u16, usize>::new());
    while let Some(done) = load.join_next().await {
        let (ids, counts) = done.unwrap();
        acknowledged.extend(ids);
        for (status, n) in counts {
            *answers.entry(status).or_default() += n;
        }
    }
    assert!(resumed, "no write succeeded after the database came back: {answers:?}");
    assert!(answers.get(&503).is_some_and(|n| *n > 0), "the outage was seen: {answers:?}");
    for id in &acknowledged {
        let stored = http.get(format!("{base}/User/{id}")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(stored.status(), 200, "acknowledged user {id} lost");
    }
    eprintln!("database stopped under load: {answers:?}, {} acknowledged, 0 lost", acknowledged.len());
    assert!(node.terminate().success());
}

/// A filesystem of the test's own, small enough to fill (tmpfs; needs root, as CI runs).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let size = format!("size={megabytes}m");
        let mounted =
            Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs"]).arg(dir.path()).status().ok()?;
        mounted.success().then_some(Self { dir })
    }

    fn resize(&self, megabytes: u32) {
        let options = format!("remount,size={megabytes}m");
        assert!(Command::new("mount").args(["-o", &options]).arg(self.dir.path()).status().unwrap().success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// SQLite on a full filesystem: writes answer 503 with `Retry-After` (never a 500) while the disk
/// is full; once space returns, writes are taken again, the database passes `integrity_check`,
/// and every acknowledged user is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_is_a_503_then_recovers_without_corruption() {
    let Some(disk) = SmallDisk::mount(6) else {
        assert!(!crate::helpers::in_ci(), "CI runs as root and can mount a tmpfs");
        eprintln!("skipping: cannot mount a small filesystem here");
        return;
    };
    let mut node = Node::start(disk.dir.path(), None);
    let base = node.wait_listening();
    let (client_id, secret) = (node.wait_printed("client id").unwrap(), node.printed("client secret").unwrap());
    let partner: i64 = node.printed("partner id").unwrap().parse().unwrap();
    let http = crate::helpers::http_client();
    let token = fetch_token(&http, &base, &client_id, &secret).await;

    // Users with 60 kB of metadata each fill the disk within a hundred writes.
    let filler = "x".repeat(60_000);
    let (mut acknowledged, mut answers) = (Vec::new(), std::collections::BTreeMap::<u16, usize>::new());
    let mut full = 0;
    for n in 0..400 {
        let body = serde_json::json!({"merchantId": partner, "email": null, "additionalData": {"type": "fill", "data": {"n": n, "pad": filler}}});
        let response = http.post(format!("{base}/User")).bearer_auth(&token).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        *answers.entry(status).or_default() += 1;
        match status {
            201 => acknowledged.push(response.json::<Value>().await.unwrap()["id"].as_i64().unwrap()),
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                full += 1;
                if full == 5 {
                    break;
                }
            }
            other => panic!("{other} with the disk at {n} users: {}", response.text().await.unwrap()),
        }
    }
    assert_eq!(full, 5, "the disk never filled: {answers:?}");

    disk.resize(64);
    let mut resumed = false;
    for _ in 0..50 {
        let body = serde_json::json!({"merchantId": partner, "email": null});
        let response = http.post(format!("{base}/User")).bearer_auth(&token).json(&body).send().await.unwrap();
        if response.status() == 201 {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(resumed, "no write succeeded after space returned");
    for id in &acknowledged {
        let stored = http.get(format!("{base}/User/{id}")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(stored.status(), 200, "acknowledged user {id} lost");
    }
    assert!(node.terminate().success());
    use sqlx::Connection;
    let url = format!("sqlite://{}", disk.dir.path().join("onboard.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut conn).await.unwrap();
    assert_eq!(check, "ok");
    eprintln!("full disk: {answers:?}, {} acknowledged, 0 lost, integrity ok", acknowledged.len());
}
