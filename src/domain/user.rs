//! Users: each belongs to one partner and has two faces, a numeric id (seed 001's int32 `id`)
//! and a public id `usr:<uuid v7>` (seed 003's `user_id`, the `userId` of 000 and 002).

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

int32_id!(
    /// A user's numeric id: seed 001's `id`.
    UserId,
    InvalidUserId,
    "a user id is an integer between 1 and 2147483647"
);

/// `usr:` followed by a UUID v7 (time-ordered, so inserts stay index-friendly).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicUserId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a user id looks like usr:<uuid>")]
pub struct InvalidPublicUserId;

impl PublicUserId {
    pub fn generate() -> Self {
        Self(format!("usr:{}", uuid::Uuid::now_v7()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PublicUserId {
    type Err = InvalidPublicUserId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uuid = s.strip_prefix("usr:").and_then(|u| uuid::Uuid::parse_str(u).ok()).ok_or(InvalidPublicUserId)?;
        Ok(Self(format!("usr:{uuid}")))
    }
}

impl fmt::Display for PublicUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for PublicUserId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_are_int32() {
        assert!(UserId::new(0).is_err());
        assert!(UserId::new(i64::from(i32::MAX) + 1).is_err());
        assert_eq!(UserId::new(2072).unwrap().get(), 2072);
    }

    #[test]
    fn public_ids_round_trip() {
        let id = PublicUserId::generate();
        assert!(id.as_str().starts_with("usr:"));
        assert_eq!(id.as_str().parse::<PublicUserId>().unwrap(), id);
        assert!("usr:nope".parse::<PublicUserId>().is_err());
        assert!("f2e6948d-cb6a-4a6a-beb8-94a1b2c3d4e5".parse::<PublicUserId>().is_err());
    }
}
