//! Onboard: partner user registration and onboarding for fintech platforms.

pub mod auth;
pub mod cip;
pub mod cli;
pub mod config;
pub mod console;
pub mod core;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod kek;
pub mod kyc;
pub mod mail;
pub mod nodes;
pub mod payments;
pub mod pii;
pub mod sanctions;
pub mod sms;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod webhooks;

/// rustls needs one process-wide crypto provider; sqlx already builds ring, so outbound HTTPS
/// (reqwest) uses it too instead of compiling a second one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
