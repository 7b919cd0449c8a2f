//! Property tests of the parse-don't-validate types every request goes through: arbitrary text
//! never panics, and what a parser accepts it accepts again in the form it prints (the value a
//! replay, a correction or a stored row hands back to it).

use proptest::prelude::*;

use super::address::{Country, PlaceDetail, subdivision};
use super::prospect::{DateOfBirth, PersonName};
use super::{Alias, Email, ExternalUserId, Phone, parse_date};

/// Text a client might send: any Unicode, and ASCII-heavy strings shaped like the field.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,80}", "[ -~]{0,40}", "[+0-9 ()-]{0,24}", "[a-z0-9.+_-]{0,12}@[a-z0-9.-]{0,16}"]
}

/// Any JSON, its object keys sometimes the members a Place Details object has. Shared with the
/// request-parser properties (`http::properties`).
pub(crate) fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![".{0,12}", "(address_components|geometry|types|short_name|long_name|location|lat|lng)"],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn today() -> time::Date {
    time::macros::date!(2026 - 12 - 04)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn emails_round_trip(raw in text()) {
        if let Ok(email) = Email::parse(&raw) {
            prop_assert_eq!(Email::parse(email.as_str()).map(|e| e.as_str().to_owned()), Ok(email.as_str().to_owned()));
        }
    }

    #[test]
    fn phones_round_trip_through_e164(raw in text()) {
        if let Ok(phone) = Phone::parse(&raw) {
            let again = Phone::parse(phone.e164()).expect("its own E.164 parses");
            prop_assert_eq!(again.e164(), phone.e164());
        }
    }

    #[test]
    fn names_round_trip(raw in text()) {
        if let Ok(name) = PersonName::parse(&raw) {
            prop_assert_eq!(PersonName::parse(name.as_str()).map(|n| n.as_str().to_owned()).ok(), Some(name.as_str().to_owned()));
        }
        if let Ok(id) = ExternalUserId::parse(&raw) {
            prop_assert_eq!(ExternalUserId::parse(id.as_str()).map(|i| i.as_str().to_owned()).ok(), Some(id.as_str().to_owned()));
        }
        if let Ok(alias) = Alias::parse(&raw) {
            prop_assert_eq!(Alias::parse(alias.as_str()).map(|a| a.as_str().to_owned()).ok(), Some(alias.as_str().to_owned()));
        }
    }

    #[test]
    fn dates_of_birth_round_trip(raw in prop_oneof![text(), "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9:.Z+-]{0,20})?"]) {
        let _ = parse_date(&raw);
        if let Ok(dob) = DateOfBirth::parse(&raw, today()) {
            prop_assert_eq!(DateOfBirth::parse(&dob.to_string(), today()).map(|d| d.to_string()).ok(), Some(dob.to_string()));
        }
    }

    #[test]
    fn countries_and_states_never_panic(country in "[A-Za-z]{0,3}", state in prop_oneof![text(), "[A-Z]{2}-[A-Z0-9]{1,3}"]) {
        if let Some(parsed) = Country::parse(&country) {
            prop_assert_eq!(Country::parse(parsed.as_str()).map(Country::as_str), Some(parsed.as_str()));
            if let Some(code) = subdivision(parsed, &state) {
                prop_assert_eq!(subdivision(parsed, code.as_str()).map(|s| s.as_str()), Some(code.as_str()));
            }
        }
    }

    #[test]
    fn place_details_never_panic(value in json()) {
        let _ = PlaceDetail::parse(&value);
    }
}
