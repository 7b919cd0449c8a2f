//! A seed-002 prospect: the person, contact and address data the CIP validators judge.

use time::Date;

use super::address::{Country, LatLng, PlaceDetail, Subdivision};
use super::{Email, Phone, TextProblem, clean_text};

wire_enum! {
    /// Self-reported gender.
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum Gender { Male = "Male", Female = "Female", Other = "Other", None = "None" }
}

wire_enum! {
    /// ISO 639-1 language of the user's communications.
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Language { En = "en", Es = "es" }
}

/// One part of a legal name (first, middle, last, second last): 1–100 characters after
/// trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, TextProblem> {
        clean_text(raw, 100, true).map(|name| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PersonName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Street and city: 1–200 characters after trimming.
pub fn address_line(raw: &str) -> Result<String, TextProblem> {
    clean_text(raw, 200, true).map(str::to_owned)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDateOfBirth {
    #[error("must be an ISO 8601 date (YYYY-MM-DD) or date-time of a real calendar day")]
    Format,
    #[error("the person must be at least 18 years old")]
    TooYoung,
    #[error("the person must be under 100 years old")]
    TooOld,
}

/// A date of birth of a person of age: 18 or older and under 100 on the day it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateOfBirth(Date);

impl DateOfBirth {
    /// Parses `YYYY-MM-DD` or an ISO 8601 date-time (the date as written is the birthday) and
    /// checks the age on `today`: at least 18, under 100.
    pub fn parse(raw: &str, today: Date) -> Result<Self, InvalidDateOfBirth> {
        use time::format_description::well_known::{Iso8601, Rfc3339};
        let raw = raw.trim();
        let date_only = time::macros::format_description!("[year]-[month]-[day]");
        let date = Date::parse(raw, date_only)
            .or_else(|_| time::OffsetDateTime::parse(raw, &Rfc3339).map(|t| t.date()))
            .or_else(|_| time::PrimitiveDateTime::parse(raw, &Iso8601::DEFAULT).map(|t| t.date()))
            .map_err(|_| InvalidDateOfBirth::Format)?;
        // The date part must be the first ten characters, so `+01990-…` or week dates are refused.
        if raw.len() < 10 || Date::parse(&raw[..10], date_only) != Ok(date) {
            return Err(InvalidDateOfBirth::Format);
        }
        let age = age_on(date, today);
        if age < 18 {
            return Err(InvalidDateOfBirth::TooYoung);
        }
        if age >= 100 {
            return Err(InvalidDateOfBirth::TooOld);
        }
        Ok(Self(date))
    }

    /// A date of birth stored after `parse` accepted it: the age rule held on the day it was
    /// given and is not checked again (a stored person of 99 may turn 100).
    pub fn stored(date: Date) -> Self {
        Self(date)
    }

    pub fn date(self) -> Date {
        self.0
    }
}

impl std::fmt::Display for DateOfBirth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Whole years from `birth` to `today` (a 29 February birthday comes on 1 March in other years).
pub fn age_on(birth: Date, today: Date) -> i32 {
    let had_birthday = (today.month() as u8, today.day()) >= (birth.month() as u8, birth.day());
    today.year() - birth.year() - i32::from(!had_birthday)
}

/// A parsed seed-002 registration (or a stored one, read back for the validators).
#[derive(Debug, Clone, PartialEq)]
pub struct Prospect {
    pub first_name: PersonName,
    pub middle_name: Option<PersonName>,
    pub last_name: PersonName,
    pub second_last_name: Option<PersonName>,
    pub gender: Option<Gender>,
    pub date_of_birth: Option<DateOfBirth>,
    pub email: Option<Email>,
    pub phone: Phone,
    pub language: Option<Language>,
    pub street: Option<String>,
    pub city: Option<String>,
    pub state: Option<Subdivision>,
    pub country: Option<Country>,
    /// Parsed, and the JSON as sent.
    pub place_detail: Option<(PlaceDetail, serde_json::Value)>,
    pub address_location: Option<LatLng>,
    pub user_location: Option<LatLng>,
}

impl Prospect {
    /// First, middle, last and second last name, as screening reads them.
    pub fn full_name(&self) -> String {
        [Some(&self.first_name), self.middle_name.as_ref(), Some(&self.last_name), self.second_last_name.as_ref()]
            .into_iter()
            .flatten()
            .map(PersonName::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The wire names (seed 002's keys) of the fields in which `corrected` differs from this
    /// registration, in the order of the form. Parsed forms compare, so a `state` sent as `DF`
    /// for a stored `MX-CMX` is no change.
    pub fn changed_fields(&self, corrected: &Prospect) -> Vec<&'static str> {
        let (a, b) = (self, corrected);
        let lat = |l: Option<LatLng>| l.map(|l| l.lat);
        let lng = |l: Option<LatLng>| l.map(|l| l.lng);
        let json = |p: &Prospect| p.place_detail.as_ref().map(|(_, json)| json.clone());
        [
            ("firstName", a.first_name != b.first_name),
            ("middleName", a.middle_name != b.middle_name),
            ("lastName", a.last_name != b.last_name),
            ("secondLastName", a.second_last_name != b.second_last_name),
            ("gender", a.gender != b.gender),
            ("dateOfBirth", a.date_of_birth != b.date_of_birth),
            ("email", a.email.as_ref().map(Email::as_str) != b.email.as_ref().map(Email::as_str)),
            ("phoneNumber", a.phone.e164() != b.phone.e164()),
            ("language", a.language != b.language),
            ("street", a.street != b.street),
            ("city", a.city != b.city),
            ("state", a.state != b.state),
            ("country", a.country != b.country),
            ("placeDetail", json(a) != json(b)),
            ("addressLatitude", lat(a.address_location) != lat(b.address_location)),
            ("addressLongitude", lng(a.address_location) != lng(b.address_location)),
            ("userLatitude", lat(a.user_location) != lat(b.user_location)),
            ("userLongitude", lng(a.user_location) != lng(b.user_location)),
        ]
        .into_iter()
        .filter_map(|(field, changed)| changed.then_some(field))
        .collect()
    }

    /// The form e-mail uniqueness is enforced on (`Email::key`).
    pub fn email_key(&self) -> Option<String> {
        self.email.as_ref().map(Email::key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn a_correction_names_the_fields_it_changes_in_parsed_form() {
        let mx = Country::parse("MX").unwrap();
        let stored = Prospect {
            first_name: PersonName::parse("Ana").unwrap(),
            middle_name: None,
            last_name: PersonName::parse("Hernández").unwrap(),
            second_last_name: None,
            gender: None,
            date_of_birth: None,
            email: None,
            phone: Phone::parse("+525521206703").unwrap(),
            language: None,
            street: None,
            city: None,
            state: crate::domain::address::subdivision(mx, "MX-CMX"),
            country: Some(mx),
            place_detail: None,
            address_location: LatLng::new(19.4, -99.1),
            user_location: None,
        };
        // `DF` is Mexico City's short name: the same state, no change.
        let same = Prospect { state: crate::domain::address::subdivision(mx, "DF"), ..stored.clone() };
        assert!(stored.changed_fields(&same).is_empty());
        let moved = Prospect { address_location: LatLng::new(19.5, -99.1), ..stored.clone() };
        assert_eq!(stored.changed_fields(&moved), ["addressLatitude"]);
        let renamed =
            Prospect { first_name: PersonName::parse("Lucía").unwrap(), address_location: None, ..stored.clone() };
        assert_eq!(stored.changed_fields(&renamed), ["firstName", "addressLatitude", "addressLongitude"]);
    }

    #[test]
    fn dates_of_birth() {
        let today = date!(2026 - 11 - 23);
        assert_eq!(DateOfBirth::parse("1990-05-17", today).map(DateOfBirth::date), Ok(date!(1990 - 05 - 17)));
        assert_eq!(DateOfBirth::parse("1990-05-17T00:00:00Z", today).map(DateOfBirth::date), Ok(date!(1990 - 05 - 17)));
        assert_eq!(
            DateOfBirth::parse("1990-05-17T23:30:00-06:00", today).map(DateOfBirth::date),
            Ok(date!(1990 - 05 - 17))
        );
        assert_eq!(DateOfBirth::parse("1990-05-17T10:00:00", today).map(DateOfBirth::date), Ok(date!(1990 - 05 - 17)));
        for bad in ["1990-02-30", "1990-13-01", "17/05/1990", "1990-5-17", "", "1990-05-17T25:00:00Z", "1990"] {
            assert_eq!(DateOfBirth::parse(bad, today).map(DateOfBirth::date), Err(InvalidDateOfBirth::Format), "{bad}");
        }
        // 18 on the day itself; not the day before.
        assert!(DateOfBirth::parse("2008-11-23", today).map(DateOfBirth::date).is_ok());
        assert_eq!(DateOfBirth::parse("2008-11-24", today).map(DateOfBirth::date), Err(InvalidDateOfBirth::TooYoung));
        assert_eq!(DateOfBirth::parse("2030-01-01", today).map(DateOfBirth::date), Err(InvalidDateOfBirth::TooYoung));
        // 99 the day before the 100th birthday; 100 on it.
        assert!(DateOfBirth::parse("1926-11-24", today).map(DateOfBirth::date).is_ok());
        assert_eq!(DateOfBirth::parse("1926-11-23", today).map(DateOfBirth::date), Err(InvalidDateOfBirth::TooOld));
        assert_eq!(age_on(date!(2004 - 02 - 29), date!(2022 - 02 - 28)), 17);
        assert_eq!(age_on(date!(2004 - 02 - 29), date!(2022 - 03 - 01)), 18);
    }

    #[test]
    fn closed_sets_are_exact() {
        assert_eq!(Gender::parse("Female"), Some(Gender::Female));
        assert_eq!(Gender::parse("female"), None);
        assert_eq!(Language::parse("es"), Some(Language::Es));
        assert_eq!(Language::parse("fr"), None);
        assert_eq!(Gender::NAMES, "Male, Female, Other, None");
    }
}
