//! HTTPS: a certificate authority and a server certificate the test makes, clients that trust
//! only that authority, HTTP/1.1 and HTTP/2 chosen by ALPN, HSTS, and the certificate swapped for
//! one of another authority while the server keeps serving.

use std::path::Path;
use std::time::Duration;

use onboard::config::Settings;
use reqwest::Version;

use crate::helpers::{Backend, TestApp};

/// A certificate authority and a PEM chain (leaf, then the authority) with its key, for
/// `127.0.0.1` and `localhost`.
pub struct Issued {
    pub authority: String,
    pub chain: String,
    pub key: String,
}

pub fn issue(name: &str) -> Issued {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test authority"));
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} onboard"));
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Issued {
        authority: ca_cert.pem(),
        chain: format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        key: leaf_key.serialize_pem(),
    }
}

pub fn install(dir: &Path, issued: &Issued) {
    std::fs::write(dir.join("chain.pem"), &issued.chain).unwrap();
    std::fs::write(dir.join("key.pem"), &issued.key).unwrap();
}

/// A client that trusts only `authority`; `http1` keeps it from offering HTTP/2.
pub fn trusting(authority: &str, http1: bool) -> reqwest::Client {
    onboard::install_crypto_provider();
    let builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(authority.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(5));
    let builder = if http1 { builder.http1_only() } else { builder };
    builder.build().unwrap()
}

fn tls_settings(dir: &Path) -> impl FnOnce(&mut Settings) {
    let (cert, key) = (dir.join("chain.pem"), dir.join("key.pem"));
    move |settings| {
        settings.tls.cert_file = cert.display().to_string();
        settings.tls.key_file = key.display().to_string();
        settings.tls.reload_check_secs = 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_alpn_hsts_and_a_certificate_swapped_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let first = issue("first");
    install(dir.path(), &first);
    let app = TestApp::spawn_with(Backend::Sqlite, tls_settings(dir.path())).await.expect("sqlite is always there");
    let base = app.address.replace("http://", "https://");

    // HTTP/1.1 and HTTP/2 on the one port, chosen by ALPN; HSTS on every answer.
    for (http1, version) in [(true, Version::HTTP_11), (false, Version::HTTP_2)] {
        let client = trusting(&first.authority, http1);
        let response = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!((response.status().as_u16(), response.version()), (200, version));
        assert_eq!(response.headers()["strict-transport-security"], "max-age=31536000");
        let missing = client.get(format!("{base}/no/such/route")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        assert!(missing.headers().contains_key("strict-transport-security"), "error answers carry it too");
        // A real route over HTTP/2: the partner's own record, by API key.
        let partner = client.get(format!("{base}/partner")).header("PartnerApiKey", &app.sandbox.api_key).send().await;
        assert_eq!(partner.unwrap().status(), 200);
    }
    // Plain HTTP to the TLS port gets no answer, and a client that does not trust the authority fails.
    assert!(app.client.get(format!("{}/healthz", app.address)).send().await.is_err());
    let second = issue("second");
    assert!(trusting(&second.authority, false).get(format!("{base}/healthz")).send().await.is_err());

    // A half-written swap (the new chain, the old key) is refused and the current one keeps serving.
    std::fs::write(dir.path().join("chain.pem"), &second.chain).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let still = trusting(&first.authority, false).get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(still.status(), 200);

    // The key arrives: the next check loads the pair; new connections get the new certificate.
    std::fs::write(dir.path().join("key.pem"), &second.key).unwrap();
    let mut swapped = false;
    for _ in 0..50 {
        if trusting(&second.authority, false).get(format!("{base}/healthz")).send().await.is_ok() {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swapped, "the new certificate is served without a restart");
    assert!(trusting(&first.authority, true).get(format!("{base}/healthz")).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_stays_the_default_and_sends_no_hsts() {
    let app = TestApp::spawn_with(Backend::Sqlite, |_| {}).await.expect("sqlite is always there");
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("strict-transport-security"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_the_certificates_or_half_a_pair_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (issue("first"), issue("second"));
    std::fs::write(dir.path().join("chain.pem"), &first.chain).unwrap();
    std::fs::write(dir.path().join("key.pem"), &second.key).unwrap();
    let mut settings = crate::helpers::test_settings("sqlite::memory:");
    tls_settings(dir.path())(&mut settings);
    let built = onboard::startup::Application::build(settings.clone()).await;
    let error = format!("{:#}", built.err().expect("a mismatched key is refused"));
    assert!(error.contains("TLS certificate"), "{error}");
    assert!(error.contains("KeyMismatch"), "{error}");
    // The same settings with the certificate's own key start.
    std::fs::write(dir.path().join("key.pem"), &first.key).unwrap();
    assert!(onboard::startup::Application::build(settings.clone()).await.is_ok());
    settings.tls.key_file.clear();
    assert!(settings.validate().is_err(), "a certificate without a key is a configuration error");
}
