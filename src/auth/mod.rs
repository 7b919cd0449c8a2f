//! Partner authentication: credentials at rest, signed access tokens, and the key ring.

pub mod cache;
pub mod credentials;
pub mod end_user;
pub mod passwords;
pub mod staff;
pub mod tokens;

pub use tokens::{KeyRing, PartnerClaims, TokenError};
