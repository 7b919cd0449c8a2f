//! E-mail addresses as an onboarding service accepts them.

use std::fmt;

use email_address::{EmailAddress, Options};

/// A deliverable-looking address: RFC 5322 `addr-spec` (via `email_address`), plus what real
/// mailboxes need and the RFC allows less of: a dotted domain of LDH labels, no quoted local
/// parts or spaces, RFC 5321 lengths (local ≤ 64, whole ≤ 254).
/// The user's spelling is kept; `normalized` lower-cases the domain for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    original: String,
    normalized: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEmail {
    #[error("the e-mail address is empty")]
    Empty,
    #[error("the e-mail address is not valid")]
    Malformed,
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        if raw.is_empty() {
            return Err(InvalidEmail::Empty);
        }
        if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"') {
            return Err(InvalidEmail::Malformed);
        }
        let options = Options::default().with_minimum_sub_domains(2).without_domain_literal().without_display_text();
        let parsed = EmailAddress::parse_with_options(raw, options).map_err(|_| InvalidEmail::Malformed)?;
        let (local, domain) = (parsed.local_part(), parsed.domain());
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        let tld_ok = domain.rsplit('.').next().is_some_and(|tld| tld.chars().any(|c| !c.is_ascii_digit()));
        if local.len() > 64 || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(InvalidEmail::Malformed);
        }
        if !domain.split('.').all(label_ok) || !tld_ok {
            return Err(InvalidEmail::Malformed);
        }
        Ok(Self { original: raw.to_owned(), normalized: format!("{local}@{}", domain.to_lowercase()) })
    }

    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The whole address lower-cased: the form one-account-per-address (seeds 002 and 003) is
    /// enforced on, since mail providers treat the local part case-insensitively and a duplicate
    /// account is the risk there.
    pub fn key(&self) -> String {
        self.original.to_lowercase()
    }

    /// Local part as given, domain lower-cased: the form uniqueness is checked on.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

impl fmt::Display for Email {
    /// Masked: an `Email` printed into a log never shows the whole address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::pii::MaskedEmail(&self.original).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_addresses() {
        for ok in
            ["client.name@example.org", "a+tag@sub.example.co.uk", "money@capa.fi", "Ana@Example.ORG", "josé@correo.mx"]
        {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(Email::parse("Ana@Example.ORG").unwrap().normalized(), "Ana@example.org");
        assert_eq!(Email::parse("Ana@Example.ORG").unwrap().as_str(), "Ana@Example.ORG");
    }

    #[test]
    fn rejects_what_a_mailbox_cannot_be() {
        assert_eq!(Email::parse(""), Err(InvalidEmail::Empty));
        let long_local = format!("{}@example.org", "a".repeat(65));
        let long_total = format!("a@{}.org", "b".repeat(250));
        for bad in [
            "plainaddress",
            "a@b",
            "a@@example.org",
            "@example.org",
            "a@",
            "a b@example.org",
            "\"a\"@example.org",
            "a@[127.0.0.1]",
            "Ana <ana@example.org>",
            "a..b@example.org",
            ".a@example.org",
            "a@-example.org",
            "a@example.123",
            "a@exa_mple.org",
            long_local.as_str(),
            long_total.as_str(),
            "a@example.org\n",
        ] {
            assert_eq!(Email::parse(bad), Err(InvalidEmail::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn display_is_masked() {
        assert_eq!(Email::parse("client.name@example.org").unwrap().to_string(), "c***@example.org");
    }
}
