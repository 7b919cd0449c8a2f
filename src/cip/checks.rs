//! The CIP validators that need nothing but the registration itself: personal data, address,
//! e-mail and phone. Each returns a `CheckResult`; soft outcomes carry the `statusDetail` the
//! user sees. Reasons name the rule, never the full value (they end up in events and logs).

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::domain::address::{self, Country};
use crate::domain::cip::{Check, CheckResult, Detail, Outcome};
use crate::domain::prospect::Prospect;

fn pass(check: Check, reason: &str) -> CheckResult {
    CheckResult { check, outcome: Outcome::Pass, reason: reason.to_owned() }
}

fn soft(check: Check, detail: Detail, reason: impl Into<String>) -> CheckResult {
    CheckResult { check, outcome: Outcome::Soft(detail), reason: reason.into() }
}

/// Words people type into name fields when they do not want to give a name.
const PLACEHOLDER_NAMES: &[&str] = &[
    "test",
    "testing",
    "prueba",
    "asdf",
    "qwerty",
    "xxx",
    "na",
    "n/a",
    "none",
    "null",
    "nil",
    "unknown",
    "desconocido",
    "fake",
    "sample",
    "demo",
    "nombre",
    "apellido",
    "name",
    "firstname",
    "lastname",
    "user",
    "usuario",
    "foo",
    "bar",
    "abc",
    "aaa",
    "sin nombre",
    "no name",
];

/// Why a name part is implausible for a legal name, if it is.
fn implausible_name(name: &str) -> Option<&'static str> {
    let lower = name.trim().to_lowercase();
    if PLACEHOLDER_NAMES.contains(&lower.as_str()) {
        return Some("is a placeholder, not a name");
    }
    if name.chars().any(|c| c.is_ascii_digit()) {
        return Some("contains digits");
    }
    let letters = name.chars().filter(|c| c.is_alphabetic()).count();
    if letters == 0 {
        return Some("has no letters");
    }
    if name.chars().any(|c| !(c.is_alphabetic() || " .'-’".contains(c))) {
        return Some("contains characters names do not have");
    }
    let mut run = (None, 0);
    for c in lower.chars() {
        run = if run.0 == Some(c) { (Some(c), run.1 + 1) } else { (Some(c), 1) };
        if run.1 >= 4 && c.is_alphabetic() {
            return Some("repeats one letter");
        }
    }
    None
}

/// Names plausible for a legal name; a date of birth present (the age was checked on arrival).
pub fn personal(p: &Prospect) -> CheckResult {
    let parts = [
        ("firstName", Some(&p.first_name)),
        ("middleName", p.middle_name.as_ref()),
        ("lastName", Some(&p.last_name)),
        ("secondLastName", p.second_last_name.as_ref()),
    ];
    for (field, value) in parts {
        if let Some(problem) = value.and_then(|v| implausible_name(v.as_str())) {
            return soft(Check::Personal, Detail::InvalidPersonalData, format!("{field} {problem}"));
        }
    }
    if p.first_name.as_str().chars().filter(|c| c.is_alphabetic()).count() < 2
        || p.last_name.as_str().chars().filter(|c| c.is_alphabetic()).count() < 2
    {
        return soft(Check::Personal, Detail::InvalidPersonalData, "first and last name need at least two letters");
    }
    if p.date_of_birth.is_none() {
        return soft(Check::Personal, Detail::ProvideAdditionalInfo, "dateOfBirth is needed to verify the person");
    }
    pass(Check::Personal, "names plausible, date of birth given")
}

/// A country is required; the state must be one of its subdivisions (checked on arrival); the
/// Place Details must name the same country and state; coordinates must lie in the country.
pub fn address(p: &Prospect) -> CheckResult {
    let Some(country) = p.country else {
        return soft(Check::Address, Detail::ProvideAdditionalInfo, "country is needed to verify the address");
    };
    if let Some((place, _)) = &p.place_detail {
        if let Some(problem) = place_disagrees(country, p.state.map(address::Subdivision::as_str), place) {
            return soft(Check::Address, Detail::InvalidAddress, problem);
        }
        if let Some(location) = place.location()
            && address::in_country(country, location) == Some(false)
        {
            return soft(Check::Address, Detail::InvalidAddress, "placeDetail location is outside the country");
        }
    }
    if let Some(location) = p.address_location
        && address::in_country(country, location) == Some(false)
    {
        return soft(Check::Address, Detail::InvalidAddress, "address coordinates are outside the country");
    }
    pass(Check::Address, "address consistent")
}

/// Whether the Place Details contradict the given country or state. A component that cannot be
/// resolved (an unusual abbreviation) is not a contradiction; a different one is.
fn place_disagrees(country: Country, state: Option<&str>, place: &address::PlaceDetail) -> Option<String> {
    if let Some(component) = place.component("country")
        && !component.short_name.eq_ignore_ascii_case(country.as_str())
    {
        return Some("placeDetail is in another country".into());
    }
    let (Some(state), Some(area)) = (state, place.component("administrative_area_level_1")) else {
        return None;
    };
    let resolved =
        address::subdivision(country, &area.short_name).or_else(|| address::subdivision(country, &area.long_name));
    match resolved {
        Some(code) if code.as_str() != state => Some("placeDetail is in another state".into()),
        _ => None,
    }
}

/// Disposable-mailbox domains (`data/reference/disposable-email-domains.txt`, CC0, see its README).
static DISPOSABLE: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/reference/disposable-email-domains.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

/// Top-level domains that never deliver mail (RFC 2606, RFC 6761, RFC 6762).
const NON_DELIVERING_TLDS: &[&str] = &["test", "example", "invalid", "localhost", "local", "onion"];

/// No e-mail is fine (it is optional); a given one must be deliverable-looking and not disposable.
pub fn email(p: &Prospect) -> CheckResult {
    let Some(email) = &p.email else {
        return pass(Check::Email, "no e-mail given");
    };
    let domain = email.normalized().rsplit_once('@').map_or("", |(_, d)| d);
    let tld = domain.rsplit('.').next().unwrap_or_default();
    if NON_DELIVERING_TLDS.contains(&tld) {
        return soft(Check::Email, Detail::InvalidEMail, "e-mail domain cannot receive mail");
    }
    // The domain itself or any parent (`x.mailinator.com`).
    let mut suffix = domain;
    loop {
        if DISPOSABLE.contains(suffix) {
            return soft(Check::Email, Detail::InvalidEMail, "e-mail domain is a disposable mailbox provider");
        }
        match suffix.split_once('.') {
            Some((_, rest)) if rest.contains('.') => suffix = rest,
            _ => break,
        }
    }
    pass(Check::Email, "e-mail deliverable-looking")
}

/// The phone must be mobile-capable (checked on arrival) and from the country of the address.
pub fn phone(p: &Prospect) -> CheckResult {
    if !p.phone.is_mobile_capable() {
        return soft(Check::Phone, Detail::ProvideAdditionalInfo, "phoneNumber is not a mobile number");
    }
    match (p.country, p.phone.region()) {
        (Some(country), Some(region)) if region != country.as_str() => soft(
            Check::Phone,
            Detail::ProvideAdditionalInfo,
            format!("phoneNumber is from {region}, the address is in {}", country.as_str()),
        ),
        _ => pass(Check::Phone, "mobile number of the address's country"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::prospect::{DateOfBirth, PersonName};
    use crate::domain::{Email, Phone};

    fn name(raw: &str) -> PersonName {
        PersonName::parse(raw).unwrap()
    }

    fn ana() -> Prospect {
        Prospect {
            first_name: name("Ana"),
            middle_name: Some(name("María")),
            last_name: name("Hernández"),
            second_last_name: Some(name("Gómez")),
            gender: None,
            date_of_birth: Some(DateOfBirth::stored(time::macros::date!(1990 - 05 - 17))),
            email: Some(Email::parse("ana@correo.mx").unwrap()),
            phone: Phone::parse("+5215521206703").unwrap(),
            language: None,
            street: None,
            city: None,
            state: address::subdivision(Country::parse("MX").unwrap(), "MX-ROO"),
            country: Country::parse("MX"),
            place_detail: None,
            address_location: None,
            user_location: None,
        }
    }

    #[test]
    fn a_plausible_person_passes_everything() {
        let p = ana();
        for result in [personal(&p), address(&p), email(&p), phone(&p)] {
            assert_eq!(result.outcome, Outcome::Pass, "{result:?}");
        }
    }

    #[test]
    fn implausible_names() {
        for (first, last) in [("Test", "Hernández"), ("Ana", "X1"), ("Aaaaa", "Pérez"), ("A", "Pérez"), ("Ana", "@@")]
        {
            let p = Prospect { first_name: name(first), last_name: name(last), ..ana() };
            assert_eq!(personal(&p).outcome, Outcome::Soft(Detail::InvalidPersonalData), "{first} {last}");
        }
        for ok in ["O'Brien", "Jean-Luc", "María José", "St. John", "Nguyễn"] {
            let p = Prospect { first_name: name(ok), ..ana() };
            assert_eq!(personal(&p).outcome, Outcome::Pass, "{ok}");
        }
        let no_dob = Prospect { date_of_birth: None, ..ana() };
        assert_eq!(personal(&no_dob).outcome, Outcome::Soft(Detail::ProvideAdditionalInfo));
    }

    #[test]
    fn addresses() {
        let place = |country: &str, state: &str, lat: f64, lng: f64| {
            let json = serde_json::json!({
                "place_id": "p", "formatted_address": "a",
                "address_components": [
                    {"long_name": "x", "short_name": state, "types": ["administrative_area_level_1", "political"]},
                    {"long_name": "x", "short_name": country, "types": ["country", "political"]}
                ],
                "geometry": {"location": {"lat": lat, "lng": lng}}
            });
            Some((address::PlaceDetail::parse(&json).unwrap(), json))
        };
        let ok = Prospect { place_detail: place("MX", "Q.R.", 21.16, -86.85), ..ana() };
        assert_eq!(address(&ok).outcome, Outcome::Pass);
        let other_state = Prospect { place_detail: place("MX", "Jal.", 20.67, -103.35), ..ana() };
        assert_eq!(address(&other_state).outcome, Outcome::Soft(Detail::InvalidAddress));
        let other_country = Prospect { place_detail: place("ES", "M", 21.16, -86.85), ..ana() };
        assert_eq!(address(&other_country).outcome, Outcome::Soft(Detail::InvalidAddress));
        let far = Prospect { address_location: address::LatLng::new(40.4, -3.7), ..ana() };
        assert_eq!(address(&far).outcome, Outcome::Soft(Detail::InvalidAddress));
        let unknown_abbreviation = Prospect { place_detail: place("MX", "Qroo state", 21.16, -86.85), ..ana() };
        assert_eq!(address(&unknown_abbreviation).outcome, Outcome::Pass);
        let no_country = Prospect { country: None, state: None, ..ana() };
        assert_eq!(address(&no_country).outcome, Outcome::Soft(Detail::ProvideAdditionalInfo));
    }

    #[test]
    fn emails() {
        for bad in ["a@mailinator.com", "a@sub.mailinator.com", "a@Example.test", "a@yopmail.com"] {
            let p = Prospect { email: Some(Email::parse(bad).unwrap()), ..ana() };
            assert_eq!(email(&p).outcome, Outcome::Soft(Detail::InvalidEMail), "{bad}");
        }
        let none = Prospect { email: None, ..ana() };
        assert_eq!(email(&none).outcome, Outcome::Pass);
    }

    #[test]
    fn phones_must_match_the_country() {
        let us = Prospect { country: Country::parse("US"), ..ana() };
        assert_eq!(phone(&us).outcome, Outcome::Soft(Detail::ProvideAdditionalInfo));
        let fixed_line_us =
            Prospect { phone: Phone::parse("+14155552671").unwrap(), country: Country::parse("US"), ..ana() };
        assert_eq!(phone(&fixed_line_us).outcome, Outcome::Pass);
    }
}
