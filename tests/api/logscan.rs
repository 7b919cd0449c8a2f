//! Every test server's log, kept and scanned: no API key, client secret, access or refresh token,
//! webhook or provider secret, password, whole e-mail address or whole phone number may appear in
//! it (masked forms such as `a***@example.org` and `+52******6703` are what logs carry). The
//! servers log as production does (JSON, `info`); `TEST_LOG=1` also prints the lines.

use std::io::Write;
use std::sync::Mutex;

static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURED.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(bytes);
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(bytes)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per test process).
pub fn install() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(onboard::telemetry::LogSettings::default().filter))
        .with_writer(|| Capture)
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .try_init();
}

/// Fails the test with every line that gives a secret or a whole address away.
pub fn assert_clean(known_secrets: &[&str]) {
    let captured = CAPTURED.lock().unwrap_or_else(|p| p.into_inner());
    let text = String::from_utf8_lossy(&captured);
    let hits: Vec<String> =
        text.lines().filter_map(|line| leak(line, known_secrets).map(|what| format!("{what}: {line}"))).collect();
    assert!(hits.is_empty(), "the server logged what it must not:\n{}", hits.join("\n"));
}

/// Prefixes of Onboard's and its providers' secrets; what follows is the secret itself.
const SECRET_PREFIXES: [&str; 9] =
    ["onb_sandbox_", "onb_live_", "onb_admin_", "cs_", "ort_", "whsec_", "sk_test_", "sk_live_", "eyJ"];

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// What the line gives away, if anything.
pub fn leak(line: &str, known_secrets: &[&str]) -> Option<&'static str> {
    if known_secrets.iter().any(|s| !s.is_empty() && line.contains(s)) {
        return Some("a credential of this test");
    }
    for prefix in SECRET_PREFIXES {
        for (at, _) in line.match_indices(prefix) {
            let starts_a_word = !line[..at].chars().next_back().is_some_and(token_char);
            // Key ids (`onb_sandbox_<16 hex>`) may be logged; a key's secret part makes it longer.
            let run = line[at + prefix.len()..].chars().take_while(|c| token_char(*c)).count();
            if starts_a_word && run >= 20 {
                return Some("a secret or token");
            }
        }
    }
    if line.contains("A9#bL8@z") {
        return Some("a password");
    }
    for (at, _) in line.match_indices('@') {
        let local = line[..at].chars().rev().take_while(|c| c.is_ascii_alphanumeric() || "._%+-".contains(*c)).count();
        let domain: String =
            line[at + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || ".-".contains(*c)).collect();
        let tld = domain.rsplit('.').next().unwrap_or("");
        if local > 0 && domain.contains('.') && tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()) {
            return Some("an e-mail address");
        }
    }
    for (at, _) in line.match_indices('+') {
        let digits = line[at + 1..].chars().take_while(char::is_ascii_digit).count();
        if digits >= 8 {
            return Some("a phone number");
        }
    }
    None
}

#[test]
fn the_scanner_finds_what_it_looks_for_and_passes_masked_values() {
    let leaks = [
        r#"{"msg":"x","key":"onb_sandbox_4c7c8fb61a937c61_70kfzNkwGXKZSVkDU72XljCwJrJGe6u8f1hMbjqiyeg"}"#,
        r#"{"token":"eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.sig"}"#,
        r#"{"refresh":"ort_abcdefghijklmnopqrstuvwxyz012345"}"#,
        r#"{"to":"ana@correo.mx"}"#,
        r#"{"phone":"+5215521206703"}"#,
        r#"{"password":"A9#bL8@zQ"}"#,
        r#"{"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#,
    ];
    for line in leaks {
        assert!(leak(line, &[]).is_some(), "missed: {line}");
    }
    let clean = [
        r#"{"msg":"api key rolled","key":"onb_sandbox_4c7c8fb61a937c61"}"#,
        r#"{"to":"a***@correo.mx","phone":"+52******6703","at":"2026-12-04T18:00:00+00:00"}"#,
        r#"{"db":"postgres://postgres@127.0.0.1:5432/test","metric":"db_metrics_total"}"#,
    ];
    for line in clean {
        assert_eq!(leak(line, &[]), None, "{line}");
    }
    assert!(leak("anything with s3cret in it", &["s3cret"]).is_some());
}
