//! Black-box tests: the real application over HTTP, on SQLite and on PostgreSQL.

mod helpers;

mod architecture;
mod auth;
mod billing;
mod consents;
mod console;
mod contract;
mod docs;
mod errors;
mod idempotency;
mod jobs;
mod kyc;
mod logscan;
mod oauth;
mod ops;
mod partner_users;
mod process;
mod prospects;
mod sanctions;
mod signup;
mod storage;
mod tenants;
mod tls;
mod user;
mod webhooks;
