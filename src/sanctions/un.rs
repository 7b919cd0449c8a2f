//! The UN Security Council Consolidated List in its published XML
//! (<https://scsanctions.un.org/resources/xml/en/consolidated.xml>, schema
//! <https://www.un.org/sc/resources/sc-sanctions.xsd>) as list entries.
//!
//! Each `INDIVIDUAL` or `ENTITY` is one entry under its `DATAID`: its name parts in the order
//! the list gives them (given names first), its aliases (`a.k.a.`, `f.k.a.`, and the quality
//! grades `Good` and `Low`, all kept: a screening is where a weak alias is still worth a look),
//! the name in its original script as one more name, dates of birth (a date, a year, a range,
//! `APPROXIMATELY` a year), nationalities, places of birth and addresses.

use time::Date;

use super::parse::{
    Address, AltName, DobSpan, EntityKind, Entry, Gender, ParseError, Remarks, country_codes, parse_dob,
};
use super::xml::{Node, walk};

/// The alias kind given to a name in its original script.
pub const ORIGINAL_SCRIPT: &str = "original script";

/// The list's entries and the day it was generated.
pub struct UnList {
    pub entries: Vec<Entry>,
    pub generated_on: Option<Date>,
}

/// One record while its elements are read.
#[derive(Default)]
struct Record {
    id: Option<i64>,
    name_parts: Vec<String>,
    list_type: Option<String>,
    reference: Option<String>,
    original_script: Vec<String>,
    comments: String,
    titles: Vec<String>,
    gender: Option<Gender>,
    nationalities: Vec<String>,
    aliases: Vec<AltName>,
    alias: (String, String),
    dobs: Vec<DobSpan>,
    dob: Dob,
    addresses: Vec<Address>,
    address: [String; 3],
    places_of_birth: Vec<String>,
}

#[derive(Default)]
struct Dob {
    kind: String,
    date: String,
    year: String,
    from: String,
    to: String,
}

/// Reads the whole document; a record without a `DATAID` or a name is an error naming where.
pub fn parse_un(xml: &[u8]) -> Result<UnList, ParseError> {
    let mut entries = Vec::new();
    let mut generated_on = None;
    let mut record: Option<(EntityKind, Record)> = None;
    walk(xml, "consolidated.xml", |node| {
        match node {
            Node::Open { name: b"CONSOLIDATED_LIST", attributes } => {
                generated_on =
                    attributes.get("dateGenerated").and_then(|v| v.get(..10).and_then(crate::domain::parse_date));
            }
            Node::Open { name: b"INDIVIDUAL" | b"ENTITY", .. } if record.is_some() => {
                return Err("a record inside another record".into());
            }
            Node::Open { name: b"INDIVIDUAL", .. } => record = Some((EntityKind::Individual, Record::default())),
            Node::Open { name: b"ENTITY", .. } => record = Some((EntityKind::Entity, Record::default())),
            Node::Open { .. } => {}
            Node::Close { name: b"INDIVIDUAL" | b"ENTITY", .. } => {
                if let Some((kind, done)) = record.take() {
                    entries.push(entry(kind, done)?);
                }
            }
            Node::Close { name, parent, text } => {
                if let Some((_, current)) = record.as_mut() {
                    element_end(current, parent, name, text);
                }
            }
        }
        Ok(())
    })?;
    if entries.is_empty() {
        return Err(ParseError::Empty("consolidated.xml"));
    }
    Ok(UnList { entries, generated_on })
}

/// Files one element's text into the record being read.
fn element_end(record: &mut Record, parent: &[u8], element: &[u8], value: &str) {
    let owned = || value.to_owned();
    match (parent, element) {
        (b"INDIVIDUAL" | b"ENTITY", b"DATAID") => record.id = value.parse().ok(),
        (b"INDIVIDUAL" | b"ENTITY", b"FIRST_NAME" | b"SECOND_NAME" | b"THIRD_NAME" | b"FOURTH_NAME")
            if !value.is_empty() =>
        {
            record.name_parts.push(owned())
        }
        (b"INDIVIDUAL" | b"ENTITY", b"UN_LIST_TYPE") => record.list_type = Some(owned()),
        (b"INDIVIDUAL" | b"ENTITY", b"REFERENCE_NUMBER") => record.reference = Some(owned()),
        (b"INDIVIDUAL" | b"ENTITY", b"NAME_ORIGINAL_SCRIPT") if !value.is_empty() => {
            record.original_script.push(owned())
        }
        (b"INDIVIDUAL" | b"ENTITY", b"COMMENTS1") => record.comments = owned(),
        (b"INDIVIDUAL", b"GENDER") => {
            record.gender = match value {
                "Male" => Some(Gender::Male),
                "Female" => Some(Gender::Female),
                _ => None,
            }
        }
        (b"TITLE", b"VALUE") if !value.is_empty() => record.titles.push(owned()),
        (b"NATIONALITY", b"VALUE") if !value.is_empty() => record.nationalities.push(owned()),
        (b"INDIVIDUAL_ALIAS" | b"ENTITY_ALIAS", b"QUALITY") => record.alias.0 = owned(),
        (b"INDIVIDUAL_ALIAS" | b"ENTITY_ALIAS", b"ALIAS_NAME") => record.alias.1 = owned(),
        (b"INDIVIDUAL" | b"ENTITY", b"INDIVIDUAL_ALIAS" | b"ENTITY_ALIAS") => {
            let (quality, name) = std::mem::take(&mut record.alias);
            let kind = if quality == "f.k.a." { "fka" } else { "aka" };
            let (latin, scripted) = split_script(&name);
            if !latin.is_empty() {
                record.aliases.push(AltName { kind: kind.into(), name: latin.into() });
            }
            if let Some(scripted) = scripted {
                record.original_script.push(scripted.into());
            }
        }
        (b"INDIVIDUAL_DATE_OF_BIRTH", b"TYPE_OF_DATE") => record.dob.kind = owned(),
        (b"INDIVIDUAL_DATE_OF_BIRTH", b"DATE") => record.dob.date = owned(),
        (b"INDIVIDUAL_DATE_OF_BIRTH", b"YEAR") => record.dob.year = owned(),
        (b"INDIVIDUAL_DATE_OF_BIRTH", b"FROM_YEAR") => record.dob.from = owned(),
        (b"INDIVIDUAL_DATE_OF_BIRTH", b"TO_YEAR") => record.dob.to = owned(),
        (b"INDIVIDUAL", b"INDIVIDUAL_DATE_OF_BIRTH") => {
            let dob = std::mem::take(&mut record.dob);
            if let Some(span) = dob_span(&dob) {
                record.dobs.push(span);
            }
        }
        (b"INDIVIDUAL_ADDRESS" | b"ENTITY_ADDRESS", b"STREET") => record.address[0] = owned(),
        (b"INDIVIDUAL_ADDRESS" | b"ENTITY_ADDRESS", b"CITY") => record.address[1] = owned(),
        (b"INDIVIDUAL_ADDRESS" | b"ENTITY_ADDRESS", b"COUNTRY") => record.address[2] = owned(),
        (b"INDIVIDUAL" | b"ENTITY", b"INDIVIDUAL_ADDRESS" | b"ENTITY_ADDRESS") => {
            let [street, city, country] =
                std::mem::take(&mut record.address).map(|p| Some(p).filter(|p| !p.is_empty()));
            if street.is_some() || city.is_some() || country.is_some() {
                record.addresses.push(Address { street, city, country });
            }
        }
        (b"INDIVIDUAL_PLACE_OF_BIRTH", b"COUNTRY") if !value.is_empty() => record.places_of_birth.push(owned()),
        _ => {}
    }
}

/// An alias that carries its original script in brackets (`Jin Tiesan (金铁三)`,
/// `Abubakar (original script: Абубакар)`) is two names: the Latin one and the original.
fn split_script(alias: &str) -> (&str, Option<&str>) {
    let alias = alias.trim();
    let Some((outer, inner)) = alias.strip_suffix(')').and_then(|a| a.rsplit_once('(')) else { return (alias, None) };
    let inner = inner.trim();
    let inner = inner.strip_prefix("original script:").map(str::trim).unwrap_or(inner);
    if outer.trim().is_empty() || inner.is_empty() || super::normalize::script_of(inner) == "Latin" {
        return (alias, None);
    }
    (outer.trim(), Some(inner))
}

/// A date of birth element as a span of days: `DATE`, `YEAR`, `FROM_YEAR`–`TO_YEAR`, with
/// `APPROXIMATELY` widening a year as the OFAC `circa` is.
fn dob_span(dob: &Dob) -> Option<DobSpan> {
    if let Some(day) = crate::domain::parse_date(&dob.date) {
        return Some(DobSpan { from: day, to: day });
    }
    if !dob.from.is_empty() && !dob.to.is_empty() {
        return parse_dob(&format!("{} to {}", dob.from, dob.to));
    }
    if dob.year.is_empty() {
        return None;
    }
    match dob.kind.as_str() {
        "APPROXIMATELY" => parse_dob(&format!("circa {}", dob.year)),
        _ => parse_dob(&dob.year),
    }
}

fn entry(kind: EntityKind, record: Record) -> Result<Entry, String> {
    let id = record.id.ok_or("a record without a DATAID")?;
    if record.name_parts.is_empty() {
        return Err(format!("record {id} has no name"));
    }
    let mut alt_names = record.aliases;
    alt_names.extend(record.original_script.into_iter().map(|name| AltName { kind: ORIGINAL_SCRIPT.into(), name }));
    let named = record.nationalities.iter().chain(&record.places_of_birth).map(String::as_str);
    let countries = country_codes(named.chain(record.addresses.iter().filter_map(|a| a.country.as_deref())));
    let programs = record.list_type.into_iter().collect();
    let remarks_text = match record.reference {
        Some(reference) if record.comments.is_empty() => format!("UN reference {reference}."),
        Some(reference) => format!("UN reference {reference}. {}", record.comments),
        None => record.comments,
    };
    Ok(Entry {
        id,
        name: record.name_parts.join(" "),
        kind,
        programs,
        title: (!record.titles.is_empty()).then(|| record.titles.join("; ")),
        remarks_text,
        remarks: Remarks {
            dobs: record.dobs,
            places_of_birth: record.places_of_birth,
            nationalities: record.nationalities,
            gender: record.gender,
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

    fn fixture() -> UnList {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/un-small/consolidated.xml");
        parse_un(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn parses_the_small_fixture() {
        let list = fixture();
        assert_eq!(list.generated_on, Some(date!(2026 - 02 - 27)));
        let umarov = list.entries.iter().find(|e| e.id == 2960872).unwrap();
        assert_eq!(umarov.name, "DOKU KHAMATOVICH UMAROV");
        assert_eq!(umarov.kind, EntityKind::Individual);
        assert_eq!(umarov.programs, ["Al-Qaida"]);
        assert!(umarov.remarks_text.starts_with("UN reference QDi.290. Physical description"));
        assert!(
            umarov.alt_names.contains(&AltName {
                kind: ORIGINAL_SCRIPT.into(), name: "Умаров Доку Хаматович".into()
            })
        );
        assert!(umarov.alt_names.contains(&AltName { kind: "aka".into(), name: "Dokka Umarov".into() }));
        assert_eq!(umarov.countries, ["RU"]);
        assert!(umarov.remarks.dobs.contains(&DobSpan { from: date!(1964 - 04 - 13), to: date!(1964 - 04 - 13) }));
        assert!(umarov.remarks.dobs.contains(&DobSpan { from: date!(1955 - 01 - 01), to: date!(1955 - 12 - 31) }));
        let entity = list.entries.iter().find(|e| e.kind == EntityKind::Entity).unwrap();
        assert!(!entity.name.is_empty());
    }

    #[test]
    fn aliases_carrying_their_original_script_are_two_names() {
        assert_eq!(split_script("Jin Tiesan (金铁三)"), ("Jin Tiesan", Some("金铁三")));
        assert_eq!(split_script("Abubakar (original script: Абубакар)"), ("Abubakar", Some("Абубакар")));
        assert_eq!(split_script("Lom-ali Butayev (Butaev)"), ("Lom-ali Butayev (Butaev)", None));
        assert_eq!(split_script("朝鲜联合机械贸易会社"), ("朝鲜联合机械贸易会社", None));
        let kim = fixture().entries.into_iter().find(|e| e.id == 6908566).unwrap();
        assert!(kim.alt_names.contains(&AltName { kind: "aka".into(), name: "Jin Tiesan".into() }));
        assert!(kim.alt_names.contains(&AltName { kind: ORIGINAL_SCRIPT.into(), name: "金铁三".into() }));
    }

    #[test]
    fn broken_documents_are_errors_not_panics() {
        for xml in [
            "",
            "<CONSOLIDATED_LIST>",
            "<CONSOLIDATED_LIST><INDIVIDUALS><INDIVIDUAL><FIRST_NAME>X</FIRST_NAME></INDIVIDUAL></INDIVIDUALS></CONSOLIDATED_LIST>",
            "<a></b>",
            "<CONSOLIDATED_LIST><INDIVIDUALS><INDIVIDUAL><DATAID>1</DATAID><FIRST_NAME>X</FIRST_NAME><INDIVIDUAL><DATAID>2</DATAID><FIRST_NAME>Y</FIRST_NAME></INDIVIDUAL></INDIVIDUAL></INDIVIDUALS></CONSOLIDATED_LIST>",
        ] {
            assert!(parse_un(xml.as_bytes()).is_err(), "{xml}");
        }
    }
}
