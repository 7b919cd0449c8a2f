//! Onboard: partner user registration and onboarding for fintech platforms.

pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod pii;
pub mod sanctions;
pub mod startup;
pub mod store;
pub mod telemetry;
