//! Staff (admin) tokens, DESIGN.md §7: `onb_admin_<16 hex id>_<secret>`, 256-bit random, shown
//! once, stored as SHA-256 (the same reasoning as partner API keys), revocable. They open only
//! `/admin/` routes; a partner credential never does, and they never act as a partner.

use secrecy::SecretString;

use super::credentials::{SecretHash, hash_secret, random_hex, random_token};
pub use crate::domain::credentials::StaffRole;

pub struct NewStaffToken {
    pub id: String,
    pub token: SecretString,
    pub hash: SecretHash,
}

super::credentials::stored_secret!(NewStaffToken, id);

impl NewStaffToken {
    pub fn generate() -> Self {
        let id = random_hex(8);
        let token = format!("onb_admin_{id}_{}", random_token(32));
        let hash = hash_secret(&token);
        Self { id, token: SecretString::from(token), hash }
    }
}

/// A token as presented in `Authorization: Bearer`, split into lookup id and digest.
pub struct PresentedStaffToken {
    pub id: String,
    pub hash: SecretHash,
}

impl PresentedStaffToken {
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix("onb_admin_")?;
        let (id, secret) = rest.split_once('_')?;
        let well_formed =
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && (40..=64).contains(&secret.len());
        well_formed.then(|| Self { id: id.to_owned(), hash: hash_secret(raw) })
    }
}

/// A verified staff member: who (the token's name, for the audit log) and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    pub name: String,
    pub role: StaffRole,
}

impl Staff {
    /// The actor string written to the audit log.
    pub fn actor(&self) -> String {
        format!("staff:{}", self.name)
    }

    /// Whether the token may act as `role`: operators may do everything reviewers do.
    pub fn has(&self, role: StaffRole) -> bool {
        self.role == role || self.role == StaffRole::Operator
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn generated_tokens_parse_back() {
        let new = NewStaffToken::generate();
        let presented = PresentedStaffToken::parse(new.token.expose_secret()).unwrap();
        assert_eq!(presented.id, new.id);
        assert_eq!(presented.hash, new.hash);
        assert!(
            PresentedStaffToken::parse("onb_sandbox_0123456789abcdef_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
                .is_none()
        );
        assert!(PresentedStaffToken::parse("onb_admin_short_secret").is_none());
    }
}
