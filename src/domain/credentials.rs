//! Credentials as the rest of the service sees them: what is stored of a generated secret, and
//! the records a presented credential is checked against. Generating and hashing them is
//! `auth`'s job; these types let the store keep them without depending on `auth`.

use super::Partner;

/// What the database keeps of a secret Onboard generated (an API key, a client secret, a staff
/// token): its public lookup id and the SHA-256 of the whole secret. The secret itself is shown
/// once and never stored.
pub trait StoredSecret {
    fn id(&self) -> &str;
    fn hash(&self) -> &[u8; 32];

    /// An owned copy of what is stored, for a write that outlives the borrow.
    fn digest(&self) -> SecretDigest {
        SecretDigest { id: self.id().to_owned(), hash: *self.hash() }
    }
}

/// What is stored of a secret, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDigest {
    pub id: String,
    pub hash: [u8; 32],
}

impl StoredSecret for SecretDigest {
    fn id(&self) -> &str {
        &self.id
    }

    fn hash(&self) -> &[u8; 32] {
        &self.hash
    }
}

pub struct ApiKeyRecord {
    pub partner: Partner,
    pub secret_hash: Vec<u8>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ApiKeyRecord {
    pub fn usable_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

pub struct ClientRecord {
    pub partner: Partner,
    pub secret_hash: Vec<u8>,
    pub revoked_at: Option<i64>,
}

wire_enum! {
    #[derive(serde::Serialize, serde::Deserialize, clap::ValueEnum)]
    #[serde(rename_all = "lowercase")]
    pub enum StaffRole {
        /// Reviews sanctions and compliance cases.
        Compliance = "compliance",
        /// Runs the service: jobs, lists, everything a reviewer can see.
        Operator = "operator",
    }
}
