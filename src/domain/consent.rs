//! Consents confirmed by one-time code (seed 002's `OtpPrivacyMissing` / `OtpContractMissing`):
//! which consent, how a partner's users confirm theirs, the channel a code goes by, the code.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Environment;

wire_enum! {
    /// The two consents seed 002 knows.
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum ConsentKind { Privacy = "privacy", Contract = "contract" }
}

wire_enum! {
    /// How a partner's users confirm consents: the partner states them (`POST …/consents`
    /// `{"privacy": true}`), or the user enters a one-time code sent to them.
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum ConsentConfirmation { Partner = "partner", Otp = "otp" }
}

wire_enum! {
    /// Where a consent code goes: the user's phone or e-mail address on file.
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum OtpChannel { Sms = "sms", Email = "email" }
}

/// The code sandbox partners' users always receive (documented; nothing is sent by SMS).
pub const SANDBOX_CONSENT_CODE: &str = "123456";
const DIGITS: usize = 6;

/// A six-digit consent code. Never printed: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsentCode(String);

impl std::fmt::Debug for ConsentCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsentCode(***)")
    }
}

impl ConsentCode {
    /// Exactly six ASCII digits.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == DIGITS && raw.bytes().all(|b| b.is_ascii_digit())).then(|| Self(raw.to_owned()))
    }

    /// A fresh code: uniformly random digits for live partners, `123456` in the sandbox.
    pub fn issue(environment: Environment) -> Self {
        match environment {
            Environment::Sandbox => Self(SANDBOX_CONSENT_CODE.to_owned()),
            Environment::Live => Self(super::random_digits(DIGITS)),
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored instead of the code: SHA-256 over the user, the consent and the code (a
    /// six-digit code is no secret to whoever reads the database; its lifetime and attempt
    /// limit protect it, this keeps it out of backups and casual view).
    pub fn digest(&self, user: i64, consent: ConsentKind) -> Vec<u8> {
        let mut hasher = Sha256::new();
        hasher.update(user.to_be_bytes());
        hasher.update(consent.as_str().as_bytes());
        hasher.update([0]);
        hasher.update(self.0.as_bytes());
        hasher.finalize().to_vec()
    }

    /// Whether this is the code `stored` was made from (constant time).
    pub fn matches(&self, user: i64, consent: ConsentKind, stored: &[u8]) -> bool {
        stored.len() == 32 && bool::from(self.digest(user, consent).ct_eq(stored))
    }
}

/// The version of the notice or contract the user was shown, as the partner names it
/// (`privacy-2026-01`): 1–64 letters, digits and `._:-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentVersion(String);

impl DocumentVersion {
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = (1..=64).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_hide_in_debug() {
        assert!(ConsentCode::parse("012345").is_some());
        for bad in ["12345", "1234567", "12345a", " 12345", ""] {
            assert!(ConsentCode::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(ConsentCode::issue(Environment::Sandbox).expose(), SANDBOX_CONSENT_CODE);
        let live = ConsentCode::issue(Environment::Live);
        assert!(ConsentCode::parse(live.expose()).is_some());
        assert_eq!(format!("{live:?}"), "ConsentCode(***)");
    }

    #[test]
    fn a_code_matches_only_its_user_and_consent() {
        let code = ConsentCode::parse("424242").unwrap();
        let stored = code.digest(7, ConsentKind::Privacy);
        assert!(code.matches(7, ConsentKind::Privacy, &stored));
        assert!(!code.matches(8, ConsentKind::Privacy, &stored));
        assert!(!code.matches(7, ConsentKind::Contract, &stored));
        assert!(!ConsentCode::parse("424243").unwrap().matches(7, ConsentKind::Privacy, &stored));
    }

    #[test]
    fn document_versions() {
        assert!(DocumentVersion::parse("privacy-2026-01").is_some());
        assert!(DocumentVersion::parse("v1.2:es_MX").is_some());
        for bad in ["", "with space", "é", &"x".repeat(65)] {
            assert!(DocumentVersion::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn wire_spellings_round_trip() {
        for kind in ConsentKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for way in ConsentConfirmation::ALL {
            assert_eq!(serde_json::to_value(way).unwrap(), way.as_str());
        }
        for channel in OtpChannel::ALL {
            assert_eq!(serde_json::to_value(channel).unwrap(), channel.as_str());
        }
    }
}
