//! The UK Sanctions List (FCDO) in its published XML
//! (<https://sanctionslist.fcdo.gov.uk/docs/UK-Sanctions-List.xml>).
//!
//! Each `Designation` is one entry. Its identity is the list's `UniqueID` (`AFG0006`): letters
//! and digits, which Onboard's integer entry ids hold as the base-36 number they spell (at most
//! twelve characters fit an `i64`; the id is shown back as the reference in the remarks).
//! Names come in six parts (`Name1` the given name … `Name6` the family or entity name) with a
//! type (`Primary Name`, `Alias`, `Primary Name Variation`); non-Latin names stand apart.
//! Dates are `dd/mm/yyyy`, where the list writes `dd` or `mm` for a part it does not know.

use time::{Date, Month};

use super::parse::{
    Address, AltName, DobSpan, Document, EntityKind, Entry, Gender, ParseError, ParsedList, Remarks, country_codes,
};
use super::un::ORIGINAL_SCRIPT;
use super::xml::{Node, walk};

const FILE: &str = "UK_Sanctions_List.xml";

#[derive(Default)]
struct Record {
    unique_id: Option<String>,
    kind: Option<EntityKind>,
    /// (name, is primary) in document order.
    names: Vec<(String, bool)>,
    name_parts: [String; 6],
    name_type: String,
    original_script: Vec<String>,
    titles: Vec<String>,
    programs: Vec<String>,
    remarks: Vec<String>,
    gender: Option<Gender>,
    dobs: Vec<DobSpan>,
    nationalities: Vec<String>,
    birth_place: [String; 2],
    places_of_birth: Vec<String>,
    birth_countries: Vec<String>,
    addresses: Vec<Address>,
    address_lines: Vec<String>,
    address_city: Option<String>,
    address_country: Option<String>,
    documents: Vec<Document>,
}

/// Reads the whole document; a designation without a `UniqueID` or a name is an error naming
/// its line.
pub fn parse_uk(xml: &[u8]) -> Result<ParsedList, ParseError> {
    let mut entries = Vec::new();
    let mut generated_on = None;
    let mut record: Option<Record> = None;
    walk(xml, FILE, |node| {
        match node {
            Node::Open { name: b"Designation", .. } if record.is_some() => {
                return Err("a Designation inside another".into());
            }
            Node::Open { name: b"Designation", .. } => record = Some(Record::default()),
            Node::Open { .. } => {}
            Node::Close { name: b"DateGenerated", text, .. } => generated_on = uk_date(text),
            Node::Close { name: b"Designation", .. } => {
                if let Some(done) = record.take() {
                    entries.push(entry(done)?);
                }
            }
            Node::Close { name, parent, text } => {
                if let Some(current) = record.as_mut() {
                    element_end(current, parent, name, text);
                }
            }
        }
        Ok(())
    })?;
    Ok(ParsedList::of_entries(entries, generated_on))
}

fn element_end(record: &mut Record, parent: &[u8], element: &[u8], value: &str) {
    let owned = || value.to_owned();
    match (parent, element) {
        (b"Designation", b"UniqueID") => record.unique_id = Some(owned()),
        (b"Designation", b"IndividualEntityShip") => {
            record.kind = Some(match value {
                "Individual" => EntityKind::Individual,
                "Ship" => EntityKind::Vessel,
                _ => EntityKind::Entity,
            })
        }
        (b"Designation", b"RegimeName") if !value.is_empty() => record.programs.push(owned()),
        (b"Designation", b"OtherInformation" | b"UKStatementofReasons") if !value.is_empty() => {
            record.remarks.push(owned())
        }
        (b"Name", b"NameType") => record.name_type = owned(),
        (b"Name", part) if part.len() == 5 && part.starts_with(b"Name") => {
            if let Some(at) = part[4].checked_sub(b'1').map(usize::from).filter(|at| *at < 6) {
                record.name_parts[at] = owned();
            }
        }
        (b"Names", b"Name") => {
            let parts = std::mem::take(&mut record.name_parts);
            let name = parts.iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>().join(" ");
            let primary = std::mem::take(&mut record.name_type) == "Primary Name";
            if !name.is_empty() && !record.names.iter().any(|(n, _)| *n == name) {
                record.names.push((name, primary));
            }
        }
        (b"NonLatinName", b"NameNonLatinScript") if !value.is_empty() => record.original_script.push(owned()),
        (b"Titles", b"Title") if !value.is_empty() => record.titles.push(owned()),
        (b"DOBs", b"DOB") => record.dobs.extend(uk_dob(value)),
        (b"Nationalities", b"Nationality") if !value.is_empty() => record.nationalities.push(owned()),
        (b"Genders", b"Gender") => {
            record.gender = match value {
                "Male" => Some(Gender::Male),
                "Female" => Some(Gender::Female),
                _ => record.gender,
            }
        }
        (b"Passport", b"PassportNumber") if !value.is_empty() => {
            record.documents.push(Document { kind: "Passport".into(), number: owned(), country: None })
        }
        (b"NationalIdentifier", b"NationalIdentifierNumber") if !value.is_empty() => {
            record.documents.push(Document { kind: "National ID No.".into(), number: owned(), country: None })
        }
        (b"Location", b"TownOfBirth") => record.birth_place[0] = owned(),
        (b"Location", b"CountryOfBirth") => record.birth_place[1] = owned(),
        (b"BirthDetails", b"Location") => {
            let place = std::mem::take(&mut record.birth_place);
            if !place[1].is_empty() {
                record.birth_countries.push(place[1].clone());
            }
            let place: Vec<&String> = place.iter().filter(|p| !p.is_empty()).collect();
            if !place.is_empty() {
                record.places_of_birth.push(place.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "));
            }
        }
        (b"Address", b"AddressLine6") if !value.is_empty() => record.address_city = Some(owned()),
        (b"Address", b"AddressCountry") if !value.is_empty() => record.address_country = Some(owned()),
        (b"Address", line) if line.starts_with(b"AddressLine") && !value.is_empty() => {
            record.address_lines.push(owned())
        }
        (b"Addresses", b"Address") => {
            let lines = std::mem::take(&mut record.address_lines);
            let street = (!lines.is_empty()).then(|| lines.join(", "));
            let (city, country) = (record.address_city.take(), record.address_country.take());
            if street.is_some() || city.is_some() || country.is_some() {
                record.addresses.push(Address { street, city, country });
            }
        }
        _ => {}
    }
}

/// `10/09/2026` → 2026-09-10.
fn uk_date(text: &str) -> Option<Date> {
    let span = uk_dob(text)?;
    span.is_exact().then_some(span.from)
}

/// `12/05/1958`, `dd/05/1958`, `dd/mm/1945` or `1946` as the span of days it allows (a day
/// without its month is no narrower than the year). The literal `dd` and `mm` are the only
/// unknown parts; anything else that is not a number is no date.
fn uk_dob(text: &str) -> Option<DobSpan> {
    let parts: Vec<&str> = text.trim().split('/').collect();
    let (day, month, year) = match parts.as_slice() {
        [year] => ("dd", "mm", *year),
        [day, month, year] => (*day, *month, *year),
        _ => return None,
    };
    let number = |part: &str, unknown: &str| -> Option<Option<u8>> {
        if part == unknown {
            return Some(None);
        }
        (part.len() <= 2 && part.bytes().all(|b| b.is_ascii_digit())).then(|| part.parse().ok()).flatten().map(Some)
    };
    let (day, month) = (number(day, "dd")?, number(month, "mm")?);
    if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = year.parse().ok()?;
    let span = |first: Month, from: u8, last: Month, to: u8| {
        Some(DobSpan {
            from: Date::from_calendar_date(year, first, from).ok()?,
            to: Date::from_calendar_date(year, last, to).ok()?,
        })
    };
    match (day, month.map(Month::try_from)) {
        (_, Some(Err(_))) => None,
        (Some(day), Some(Ok(month))) => span(month, day, month, day),
        (None, Some(Ok(month))) => span(month, 1, month, month.length(year)),
        (_, None) => span(Month::January, 1, Month::December, 31),
    }
}

/// `AFG0006` as the base-36 number it spells: an integer id that is unique as the reference is
/// and reads back. Only the published shape is taken — a capital letter, then capitals and
/// digits, ten at most — so no two spellings give one id (`afg0006`, `+AFG0006`, `0AFG0006`)
/// and every id stays below 2^53, exact in any JSON reader.
fn entity_id(unique_id: &str) -> Option<i64> {
    let bytes = unique_id.as_bytes();
    let shaped = matches!(bytes.first(), Some(b'A'..=b'Z'))
        && bytes.len() <= 10
        && bytes.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    shaped.then(|| i64::from_str_radix(unique_id, 36).ok()).flatten()
}

fn entry(record: Record) -> Result<Entry, String> {
    let reference = record.unique_id.ok_or("a Designation without a UniqueID")?;
    let id = entity_id(&reference).ok_or_else(|| {
        format!("UniqueID {reference:?} is not a capital letter and up to nine more capitals and digits")
    })?;
    let primary = record
        .names
        .iter()
        .position(|(_, primary)| *primary)
        .or((!record.names.is_empty()).then_some(0))
        .ok_or_else(|| format!("designation {reference} has no name"))?;
    let mut alt_names: Vec<AltName> = record
        .names
        .iter()
        .enumerate()
        .filter(|(at, _)| *at != primary)
        .map(|(_, (name, _))| AltName { kind: "aka".into(), name: name.clone() })
        .collect();
    alt_names.extend(record.original_script.into_iter().map(|name| AltName { kind: ORIGINAL_SCRIPT.into(), name }));
    let named = record.nationalities.iter().chain(&record.birth_countries).map(String::as_str);
    let countries = country_codes(named.chain(record.addresses.iter().filter_map(|a| a.country.as_deref())));
    let mut remarks_text = format!("UK reference {reference}.");
    for remark in &record.remarks {
        remarks_text.push(' ');
        remarks_text.push_str(remark);
    }
    Ok(Entry {
        id,
        name: record.names[primary].0.clone(),
        kind: record.kind.unwrap_or(EntityKind::Entity),
        programs: record.programs,
        title: (!record.titles.is_empty()).then(|| record.titles.join("; ")),
        remarks_text,
        remarks: Remarks {
            dobs: record.dobs,
            places_of_birth: record.places_of_birth,
            nationalities: record.nationalities,
            gender: record.gender,
            documents: record.documents,
            ..Remarks::default()
        },
        alt_names,
        addresses: record.addresses,
        countries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn fixture() -> ParsedList {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/uk-small/UK_Sanctions_List.xml");
        parse_uk(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn parses_the_small_fixture() {
        let list = fixture();
        assert_eq!(list.generated_on, Some(date!(2026 - 09 - 10)));
        let names: Vec<&str> = list.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["HAJI KHAIRULLAH MONEY EXCHANGE", "MOHAMMAD HASSAN AKHUND", "BNK (UK) Ltd", "Petrel 8", "Fadhil Harun"]
        );
        let kinds: Vec<EntityKind> = list.entries.iter().map(|e| e.kind).collect();
        use EntityKind::*;
        assert_eq!(kinds, [Entity, Individual, Entity, Vessel, Individual]);

        let akhund = &list.entries[1];
        assert_eq!(akhund.id, i64::from_str_radix("AFG0006", 36).unwrap());
        assert!(akhund.remarks_text.starts_with("UK reference AFG0006. A close associate"));
        assert_eq!(
            akhund.remarks.dobs,
            [
                DobSpan { from: date!(1958 - 05 - 12), to: date!(1958 - 05 - 12) },
                DobSpan { from: date!(1945 - 01 - 01), to: date!(1945 - 12 - 31) },
                DobSpan { from: date!(1946 - 01 - 01), to: date!(1946 - 12 - 31) },
            ]
        );
        assert_eq!(akhund.alt_names[0].name, "Mohammad Akhwand");
        assert_eq!(akhund.alt_names[1].kind, ORIGINAL_SCRIPT);
        assert_eq!(akhund.alt_names[1].name, "محمد حسن آخوند");
        assert_eq!(akhund.title.as_deref(), Some("Mullah; Haji"));
        assert_eq!(akhund.countries, ["AF"]);
        assert_eq!(akhund.remarks.gender, Some(Gender::Male));
        assert_eq!(akhund.remarks.places_of_birth, ["Pashmul village, Panjwai District, Afghanistan"]);
        assert_eq!(akhund.remarks.documents.len(), 3);

        let exchange = &list.entries[0];
        assert_eq!(exchange.countries, ["AF", "AE"]);
        assert_eq!(exchange.addresses[1].city.as_deref(), Some("Dubai"));
        assert_eq!(exchange.addresses[1].street.as_deref(), Some("Branch Office 14"));
        assert_eq!(exchange.programs, ["The Afghanistan (Sanctions) (EU Exit) Regulations 2020"]);
    }

    #[test]
    fn dates_with_unknown_parts_are_spans() {
        assert_eq!(uk_dob("dd/02/2000"), Some(DobSpan { from: date!(2000 - 02 - 01), to: date!(2000 - 02 - 29) }));
        assert_eq!(uk_dob("31/02/2000"), None);
        assert_eq!(uk_dob("yesterday"), None);
        assert_eq!(uk_date("dd/mm/2026"), None);
        assert_eq!(uk_dob("12/mm/1958"), Some(DobSpan { from: date!(1958 - 01 - 01), to: date!(1958 - 12 - 31) }));
        for bad in ["O5/05/1958", "300/05/1958", "12/13/1958", "12/05/58", "+12/05/1958", "12/05/1958/1"] {
            assert_eq!(uk_dob(bad), None, "{bad}");
        }
        assert_eq!(entity_id("AFG0006"), Some(i64::from_str_radix("AFG0006", 36).unwrap()));
        for bad in ["afg0006", "+AFG0006", "0AFG0006", "AFG-0006", "", "ABCDEFGHIJK"] {
            assert_eq!(entity_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_list() {
        for bad in [
            "<Designations><Designation><Names><Name><Name6>X</Name6></Name></Names></Designation></Designations>",
            "<Designations><Designation><UniqueID>AFG0001</UniqueID></Designation></Designations>",
            "<Designations><Designation><UniqueID>AFG-0001</UniqueID><Names><Name><Name6>X</Name6></Name></Names></Designation></Designations>",
            "<Designations><Designation><Designation>",
        ] {
            let err = parse_uk(bad.as_bytes()).map(|l| l.entries.len()).unwrap_err();
            assert!(matches!(err, ParseError::Row { file: FILE, line: 1, .. }), "{bad}: {err}");
        }
    }
}
