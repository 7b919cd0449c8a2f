//! Domain types: parsed once at the edge, trusted everywhere after.

pub mod email;
pub mod partner;
pub mod user;

pub use email::{Email, InvalidEmail};
pub use partner::{Environment, PartnerId, PartnerName};
pub use user::{PublicUserId, UserId};

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
