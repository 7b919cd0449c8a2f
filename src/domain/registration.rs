//! Seed 000's partner registration: the partner's own id for the user, how the user signs in,
//! and what kind of user it is.

use serde::{Deserialize, Serialize};

use super::{Email, Phone, TextProblem, clean_text};

/// The partner's own identifier for the user: 1–255 printable characters, kept exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalUserId(String);

impl ExternalUserId {
    pub fn parse(raw: &str) -> Result<Self, TextProblem> {
        clean_text(raw, 255, false).map(|id| Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: trimmed, 1–100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias(String);

impl Alias {
    pub fn parse(raw: &str) -> Result<Self, TextProblem> {
        clean_text(raw, 100, true).map(|alias| Self(alias.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

wire_enum! {
    /// Seed 000's `method`: how the user signs in.
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    pub enum AuthMethod { Email = "EMAIL", PhoneNumber = "PHONE_NUMBER", None = "NONE" }
}

wire_enum! {
    /// Seed 000's `type`.
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    pub enum UserType { Individual = "INDIVIDUAL", Business = "BUSINESS" }
}

/// How the user signs in, with the identifier that method needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    Email(Email),
    Phone(Phone),
    None,
}

impl SignIn {
    pub fn method(&self) -> AuthMethod {
        match self {
            SignIn::Email(_) => AuthMethod::Email,
            SignIn::Phone(_) => AuthMethod::PhoneNumber,
            SignIn::None => AuthMethod::None,
        }
    }

    /// The identifier as stored: the e-mail as spelled, the phone in E.164.
    pub fn identifier(&self) -> Option<&str> {
        match self {
            SignIn::Email(email) => Some(email.as_str()),
            SignIn::Phone(phone) => Some(phone.e164()),
            SignIn::None => None,
        }
    }
}

/// A validated seed-000 registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerRegistration {
    pub external_user_id: ExternalUserId,
    pub sign_in: SignIn,
    pub user_type: UserType,
    pub alias: Option<Alias>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_are_kept_exactly() {
        assert_eq!(ExternalUserId::parse(" 91b95244 ").unwrap().as_str(), " 91b95244 ");
        assert_eq!(ExternalUserId::parse(""), Err(TextProblem::Empty));
        assert_eq!(ExternalUserId::parse(&"x".repeat(256)), Err(TextProblem::TooLong(255)));
        assert_eq!(ExternalUserId::parse("a\nb"), Err(TextProblem::ControlCharacter));
        assert!(ExternalUserId::parse(&"é".repeat(255)).is_ok());
    }

    #[test]
    fn aliases_are_trimmed() {
        assert_eq!(Alias::parse("  Satoshi Nakamoto ").unwrap().as_str(), "Satoshi Nakamoto");
        assert_eq!(Alias::parse("  "), Err(TextProblem::Empty));
        assert_eq!(Alias::parse(&"a".repeat(101)), Err(TextProblem::TooLong(100)));
        assert_eq!(Alias::parse("a\u{0}"), Err(TextProblem::ControlCharacter));
    }

    #[test]
    fn enums_are_exact() {
        assert_eq!(AuthMethod::parse("PHONE_NUMBER"), Some(AuthMethod::PhoneNumber));
        assert_eq!(AuthMethod::parse("email"), None);
        assert_eq!(UserType::parse("BUSINESS"), Some(UserType::Business));
        assert_eq!(UserType::parse("INDIVIDUAL or BUSINESS"), None);
    }
}
