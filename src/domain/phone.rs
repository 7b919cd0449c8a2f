//! Phone numbers in international (E.164) form, checked against libphonenumber's metadata.

use std::fmt;

use phonenumber::{Mode, Type};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    e164: String,
    kind: Type,
    /// ISO 3166-1 alpha-2 of the numbering plan's region (`+1 416…` is CA, not US).
    region: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPhone {
    #[error("must be in international format: + and the country code, e.g. +524401234567")]
    NotInternational,
    #[error("is not a valid phone number")]
    Invalid,
}

impl Phone {
    /// Parses `+<country code><number>` (spaces, dots, dashes and parentheses allowed).
    pub fn parse(raw: &str) -> Result<Self, InvalidPhone> {
        let trimmed = raw.trim();
        let Some(rest) = trimmed.strip_prefix('+') else { return Err(InvalidPhone::NotInternational) };
        if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_digit() || " .-()".contains(c)) {
            return Err(InvalidPhone::Invalid);
        }
        let mut digits: String = rest.chars().filter(char::is_ascii_digit).collect();
        // Mexico dropped the mobile `1` after +52 in 2019 and the metadata no longer accepts
        // it; numbers in that legacy form (13 digits, as in seed 002's own example) are still
        // what many partners send. Store the modern form.
        if digits.len() == 13 && digits.starts_with("521") {
            digits.remove(2);
        }
        if digits.len() > 15 {
            return Err(InvalidPhone::Invalid);
        }
        let number = phonenumber::parse(None, format!("+{digits}")).map_err(|_| InvalidPhone::Invalid)?;
        if !phonenumber::is_valid(&number) {
            return Err(InvalidPhone::Invalid);
        }
        let kind = number.number_type(&phonenumber::metadata::DATABASE);
        let region = number.country().id().and_then(|id| rust_iso3166::from_alpha2(id.as_ref())).map(|c| c.alpha2);
        Ok(Self { e164: number.format().mode(Mode::E164).to_string(), kind, region })
    }

    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// The region the number belongs to, when the plan tells (`MX`, `US`, `CA`).
    pub fn region(&self) -> Option<&'static str> {
        self.region
    }

    /// Can receive SMS as a mobile: `Mobile`, or `FixedLineOrMobile` where the plan does not
    /// tell them apart (Mexico's ranges are identical for both).
    pub fn is_mobile_capable(&self) -> bool {
        matches!(self.kind, Type::Mobile | Type::FixedLineOrMobile)
    }
}

impl fmt::Display for Phone {
    /// Masked, so a `Phone` in a log never shows the whole number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::pii::MaskedPhone(&self.e164).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_examples_and_formatting() {
        assert_eq!(Phone::parse("+524401234567").unwrap().e164(), "+524401234567");
        assert_eq!(Phone::parse("+52 (55) 2120-6703").unwrap().e164(), "+525521206703");
        // Seed 002's legacy Mexican mobile form becomes the modern number.
        let legacy = Phone::parse("+5215521206703").unwrap();
        assert_eq!(legacy.e164(), "+525521206703");
        assert!(legacy.is_mobile_capable());
        assert_eq!(Phone::parse("+1 415 555 2671").unwrap().e164(), "+14155552671");
        assert_eq!(Phone::parse("+1 415 555 2671").unwrap().region(), Some("US"));
        assert_eq!(Phone::parse("+1 416 555 0123").unwrap().region(), Some("CA"));
        assert_eq!(legacy.region(), Some("MX"));
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        assert_eq!(Phone::parse("5521206703"), Err(InvalidPhone::NotInternational));
        for bad in ["+", "+52abc", "+999123456", "+52123", "+1234567890123456", "+52 55 2120 670"] {
            assert_eq!(Phone::parse(bad), Err(InvalidPhone::Invalid), "{bad}");
        }
    }

    #[test]
    fn display_is_masked() {
        assert_eq!(Phone::parse("+525521206703").unwrap().to_string(), "+52******6703");
    }
}
