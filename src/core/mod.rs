//! Use cases: one function per thing a partner, an end user, a validator or a staff member can
//! do, each one atomic write that owns its transaction (`Store::write`). HTTP handlers, CLI
//! commands and job handlers parse their input, call one of these, and render the result; the
//! rules (state moves, events, audit entries, follow-up jobs) live here (STYLE.md, "The core
//! layer").

pub mod audit;
pub mod billing;
pub mod consents;
pub mod console;
pub mod kyc;
pub mod onboarding;
pub mod partners;
pub mod registrations;
pub mod signup;
pub mod staff;
pub mod webhooks;
