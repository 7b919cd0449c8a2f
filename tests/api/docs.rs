//! The API reference is the behaviour: `/openapi.json` lists exactly the routes the router
//! serves, validates as OpenAPI 3.1, generates a client that works, and renders at `/docs` in a
//! real browser with no network.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::helpers::{Backend, TestApp, python_has, tool_installed};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn app_and_spec() -> (TestApp, Value) {
    let app = TestApp::spawn_with(Backend::Sqlite, |_| {}).await.expect("sqlite is always there");
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    (app, spec)
}

/// A concrete path for a template: each `{param}` replaced by a value of its declared type.
fn concrete(path: &str, operation: &Value) -> String {
    let mut out = path.to_owned();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        let Some(name) = parameter["name"].as_str() else { continue };
        let value =
            if parameter.pointer("/schema/type").and_then(Value::as_str) == Some("integer") { "7" } else { "x7" };
        out = out.replace(&format!("{{{name}}}"), value);
    }
    assert!(!out.contains('{'), "{path}: a path parameter is not declared");
    out
}

/// The router's own answers to a path it does not serve, or a method it does not take there.
async fn unrouted(response: reqwest::Response) -> Option<u16> {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    match status {
        405 => Some(405),
        404 if body["detail"] == "No route matches this path." => Some(404),
        _ => None,
    }
}

#[tokio::test]
async fn every_documented_route_is_served_and_no_other_method_is() {
    let (app, spec) = app_and_spec().await;
    let paths = spec["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        let first = item.as_object().and_then(|ops| ops.values().next()).expect("an operation");
        let url = app.url(&concrete(path, first));
        for method in METHODS {
            let request = app
                .client
                .request(method.to_uppercase().parse().unwrap(), &url)
                .header("content-type", "application/json");
            let answer = unrouted(request.body("{}").send().await.expect("request")).await;
            if item.get(method).is_some() {
                operations += 1;
                assert_eq!(answer, None, "{} {path} is documented but not served", method.to_uppercase());
            } else {
                assert_eq!(answer, Some(405), "{} {path} is served but not documented", method.to_uppercase());
            }
        }
    }
    assert!(operations >= 60, "{operations} operations");
    // Every operation is in one of the reference's groups, and every group is introduced.
    let groups: Vec<&str> = spec["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let tags = operation["tags"].as_array().expect("tags");
            assert!(tags.len() == 1 && groups.contains(&tags[0].as_str().unwrap()), "{method} {path}: {tags:?}");
            assert!(operation["operationId"].as_str().is_some_and(|id| !id.contains('_')), "{method} {path}");
        }
    }
    assert!(spec["tags"].as_array().unwrap().iter().all(|t| t["description"].as_str().is_some_and(|d| d.len() > 40)));
}

#[tokio::test]
async fn every_request_and_answer_is_typed() {
    let (_app, spec) = app_and_spec().await;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let at = format!("{} {path}", method.to_uppercase());
            for content in operation.pointer("/requestBody/content").and_then(Value::as_object).into_iter().flatten() {
                let schema = &content.1["schema"];
                let typed =
                    schema.get("$ref").is_some() || schema.get("properties").is_some() || schema.get("oneOf").is_some();
                assert!(typed, "{at}: untyped request body {schema}");
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                let response = match response["$ref"].as_str() {
                    Some(shared) => spec.pointer(&shared.replace("#/", "/")).expect("a declared response"),
                    None => response,
                };
                assert!(response["description"].as_str().is_some_and(|d| !d.is_empty()), "{at} {status}");
                let empty = matches!(status.as_str(), "204") || (path == "/oauth/revoke" && status == "200");
                let content = response["content"].as_object();
                assert!(
                    empty || content.is_some_and(|c| c.values().all(|m| m.get("schema").is_some())),
                    "{at} {status}: no schema"
                );
            }
        }
    }
    // Seed 001's contract, as the partner reads it.
    let create_user = &spec["paths"]["/User"]["post"];
    let example = &create_user["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(example["$ref"], "#/components/schemas/CreateUserRequest");
    let request = &spec["components"]["schemas"]["CreateUserRequest"];
    assert_eq!(request["required"], serde_json::json!(["merchantId", "email"]));
    assert_eq!(request["example"], serde_json::json!({"merchantId": 9101, "email": "client.name@example.org"}));
    let bad = &create_user["responses"]["400"]["content"]["application/problem+json"];
    assert_eq!(bad["schema"]["$ref"], "#/components/schemas/ValidationProblemDetails");
    assert_eq!(bad["examples"]["Invalid email format"]["value"]["errors"]["Email"][0], "Invalid email address");
    // Shared headers: declared once, referenced by each operation.
    for header in ["Idempotent-Replayed", "Retry-After", "traceresponse"] {
        assert!(spec["components"]["headers"].get(header).is_some(), "{header}");
    }
    let parameters = create_user["parameters"].to_string();
    assert!(parameters.contains("#/components/parameters/Idempotency-Key") && parameters.contains("traceparent"));
    let statuses = &spec["components"]["schemas"]["Status"]["enum"];
    assert_eq!(statuses.as_array().map(Vec::len), Some(6), "{statuses}");
}

/// Runs an outside program on a blocking thread: the server under test shares this test's
/// runtime, and a client program calling it must not wait on a thread the server needs.
pub async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().expect("the program starts")).await.unwrap()
}

/// Writes the document where Python can read it.
async fn spec_file(app: &TestApp, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("openapi.json");
    std::fs::write(&path, app.get("/openapi.json").await.bytes().await.unwrap()).unwrap();
    path
}

#[tokio::test]
async fn the_document_validates_against_the_openapi_3_1_schema() {
    if !tool_installed(python_has("openapi_spec_validator"), "openapi-spec-validator (pip)") {
        return;
    }
    let (app, _) = app_and_spec().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_file(&app, dir.path()).await;
    let script = "import json, sys\nfrom openapi_spec_validator import OpenAPIV31SpecValidator\n\
                  OpenAPIV31SpecValidator(json.load(open(sys.argv[1]))).validate()\nprint('valid')";
    let mut command = Command::new("python3");
    command.args(["-c", script]).arg(&spec);
    let output = run(command).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Every example (the seeds' own among them) is valid against the schema it illustrates.
    let mut command = Command::new("python3");
    command.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/examples.py")).arg(&spec);
    let output = run(command).await;
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}{}", String::from_utf8_lossy(&output.stderr));
    let checked: u32 = printed.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(checked >= 20, "{printed}");
}

#[tokio::test]
async fn a_client_generated_from_the_document_registers_a_seed_000_user() {
    if !tool_installed(python_has("openapi_python_client"), "openapi-python-client (pip)") {
        return;
    }
    let (app, _) = app_and_spec().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_file(&app, dir.path()).await;
    let mut command = Command::new("python3");
    command.args(["-m", "openapi_python_client", "generate", "--meta", "none", "--output-path"]);
    command.arg(dir.path().join("client")).arg("--path").arg(&spec);
    let generated = run(command).await;
    let log = String::from_utf8_lossy(&generated.stdout).to_string() + &String::from_utf8_lossy(&generated.stderr);
    assert!(generated.status.success(), "{log}");
    assert!(!log.contains("Warning"), "the generator had to skip something:\n{log}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/generated_client.py");
    let mut command = Command::new("python3");
    command.arg(script).arg(dir.path()).arg(app.url("")).arg(&app.sandbox.api_key);
    let registered = run(command).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&registered.stdout), String::from_utf8_lossy(&registered.stderr));
    assert!(registered.status.success(), "{stdout}{stderr}");
    let user: Value = serde_json::from_slice(&registered.stdout).expect("the script prints the user");
    // The user is really there: read back with the partner's key.
    let external = user["externalUserId"].as_str().unwrap();
    let stored = app
        .client
        .get(app.url(&format!("/partner/users/{external}")))
        .header("PartnerApiKey", &app.sandbox.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    let stored: Value = stored.json().await.unwrap();
    assert_eq!(
        (stored["userId"].clone(), stored["identifier"].clone()),
        (user["userId"].clone(), "money@capa.fi".into())
    );
}

#[tokio::test]
async fn the_reference_renders_in_headless_chromium_with_no_network() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready = Path::new(&browser).exists() && root.join("tests/browser/node_modules/playwright-core").exists();
    if !tool_installed(ready, "Chromium and tests/browser's playwright-core (npm ci)") {
        return;
    }
    let (app, _) = app_and_spec().await;
    let screenshot = root.join("target/docs-post-user.png");
    let mut command = Command::new("node");
    command.current_dir(root.join("tests/browser")).arg("docs.mjs").arg(app.url("")).arg(&screenshot);
    command.env("CHROMIUM", &browser);
    let rendered = run(command).await;
    let report = String::from_utf8_lossy(&rendered.stdout);
    assert!(rendered.status.success(), "{report}{}", String::from_utf8_lossy(&rendered.stderr));
    let report: Value = serde_json::from_str(&report).expect("the script prints its report");
    assert!(report["checked"].as_u64().unwrap() >= 60, "{report}");
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000),
        "no screenshot at {}",
        screenshot.display()
    );
}

/// utoipa names a component after its type (or its `#[schema(as = …)]`), and a second type of
/// the same name silently replaces the first in `/openapi.json`: two `TokenResponse`s once made
/// the partner's token answer document the end user's. Each name is taken once.
#[test]
fn no_two_types_claim_one_schema_name() {
    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut sources = Vec::new();
    files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut sources);
    let mut owners: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for file in sources {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("ToSchema)]") {
            // The item the derive belongs to: the next `struct`/`enum`, unless `as = X` renames it.
            let rest = &text[at..];
            let item = [rest.find("struct "), rest.find("enum ")].into_iter().flatten().min();
            let Some(item) = item.filter(|&i| i < 600) else { continue };
            let renamed = rest[..item].find("as = ").map(|i| &rest[i + 5..]);
            let name_at = renamed.unwrap_or_else(|| rest[item..].split_once(' ').map_or("", |(_, n)| n));
            let name: String = name_at.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                owners.entry(name).or_default().push(file.display().to_string());
            }
        }
    }
    assert!(owners.len() > 40, "the scan finds the schema types: {owners:?}");
    let shared: Vec<_> = owners.iter().filter(|(_, files)| files.len() > 1).collect();
    assert!(shared.is_empty(), "one schema name, several types (give each `#[schema(as = …)]`): {shared:?}");
}
