//! Partners: the tenants that register users through Onboard.

use serde::{Deserialize, Serialize};

int32_id!(
    /// A partner's numeric id. It is 001's `merchantId` and 003's `partnerId`, an int32 on both wires.
    PartnerId,
    InvalidPartnerId,
    "a partner id is an integer between 1 and 2147483647"
);

wire_enum! {
    /// Sandbox partners get fixed test behaviour (e.g. 003's code `12345`); live partners never do.
    #[derive(Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Environment { Sandbox = "sandbox", Live = "live" }
}

/// A tenant: the partner every user, key and setting belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Partner {
    #[serde(rename = "partnerId")]
    pub id: PartnerId,
    pub name: String,
    pub environment: Environment,
    pub created_at: i64,
}

/// A partner's display name: trimmed, 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a partner name {0}")]
pub struct InvalidPartnerName(pub super::TextProblem);

impl PartnerName {
    pub fn parse(raw: &str) -> Result<Self, InvalidPartnerName> {
        super::clean_text(raw, 200, true).map(|name| Self(name.to_owned())).map_err(InvalidPartnerName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TextProblem;

    #[test]
    fn partner_ids_are_int32_positive() {
        assert!(PartnerId::new(0).is_err());
        assert!(PartnerId::new(-1).is_err());
        assert!(PartnerId::new(i64::from(i32::MAX) + 1).is_err());
        assert_eq!(PartnerId::new(9101).unwrap().get(), 9101);
        assert_eq!(" 42 ".parse::<PartnerId>().unwrap().get(), 42);
        assert!("4x".parse::<PartnerId>().is_err());
    }

    #[test]
    fn partner_names_are_trimmed_and_bounded() {
        assert_eq!(PartnerName::parse("  Acme  ").unwrap().as_str(), "Acme");
        assert_eq!(PartnerName::parse("   "), Err(InvalidPartnerName(TextProblem::Empty)));
        assert_eq!(PartnerName::parse(&"x".repeat(201)), Err(InvalidPartnerName(TextProblem::TooLong(200))));
        assert!(PartnerName::parse(&"x".repeat(200)).is_ok());
        assert_eq!(PartnerName::parse("a\u{7}b"), Err(InvalidPartnerName(TextProblem::ControlCharacter)));
    }

    #[test]
    fn environments_parse_exactly() {
        assert_eq!("live".parse::<Environment>(), Ok(Environment::Live));
        assert!("LIVE".parse::<Environment>().is_err());
    }
}
