//! The EU consolidated list of persons, groups and entities subject to financial sanctions
//! (the Financial Sanctions Files, FSF) in its published XML, format 1.1
//! (<https://webgate.ec.europa.eu/fsd/fsf>, namespace `http://eu.europa.ec/fpi/fsd/export`).
//!
//! Each `sanctionEntity` is one entry under its `logicalId`. The list has no primary name: every
//! `nameAlias` is equal, in many languages and scripts. The first Latin-script alias in English
//! (or with no language) names the entry; the others are aliases, those in another script kept
//! as original-script names. Dates of birth are a date, a year (`circa` widening it as OFAC's
//! is), or a range of years; citizenships, places of birth and addresses give ISO codes.

use time::Date;

use super::normalize::script_of;
use super::parse::{
    Address, AltName, DobSpan, Document, EntityKind, Entry, Gender, ParseError, ParsedList, Remarks, known_code,
    parse_dob,
};
use super::un::ORIGINAL_SCRIPT;
use super::xml::{Attributes, Node, walk};

const FILE: &str = "eu_fsf.xml";

#[derive(Default)]
struct Record {
    id: i64,
    kind: Option<EntityKind>,
    reference: Option<String>,
    un_reference: Option<String>,
    /// (name, language code) in document order.
    names: Vec<(String, String)>,
    titles: Vec<String>,
    programs: Vec<String>,
    remarks: Vec<String>,
    gender: Option<Gender>,
    dobs: Vec<DobSpan>,
    places_of_birth: Vec<String>,
    citizenships: Vec<String>,
    addresses: Vec<Address>,
    documents: Vec<Document>,
    countries: Vec<&'static str>,
}

impl Record {
    fn country(&mut self, attributes: &Attributes<'_>) {
        if let Some(code) = attributes.get("countryIso2Code").and_then(|c| known_code(&c))
            && !self.countries.contains(&code)
        {
            self.countries.push(code);
        }
    }
}

/// Reads the whole document; an entity without a numeric `logicalId` or a name is an error
/// naming its line.
pub fn parse_eu(xml: &[u8]) -> Result<ParsedList, ParseError> {
    let mut entries = Vec::new();
    let mut generated_on: Option<Date> = None;
    let mut record: Option<Record> = None;
    walk(xml, FILE, |node| {
        match node {
            Node::Open { name: b"export", attributes } => {
                generated_on =
                    attributes.get("generationDate").and_then(|v| v.get(..10).and_then(crate::domain::parse_date));
            }
            Node::Open { name: b"sanctionEntity", attributes } => {
                if record.is_some() {
                    return Err("a sanctionEntity inside another".into());
                }
                let id = attributes
                    .get("logicalId")
                    .and_then(|v| v.parse().ok())
                    .ok_or("a sanctionEntity without a numeric logicalId")?;
                record = Some(Record {
                    id,
                    reference: attributes.get("euReferenceNumber"),
                    un_reference: attributes.get("unitedNationId"),
                    ..Record::default()
                });
            }
            Node::Open { name, attributes } => {
                if let Some(current) = record.as_mut() {
                    open(current, name, &attributes);
                }
            }
            Node::Close { name: b"sanctionEntity", .. } => {
                if let Some(done) = record.take() {
                    entries.push(entry(done)?);
                }
            }
            Node::Close { name: b"remark", parent: b"sanctionEntity", text } if !text.is_empty() => {
                if let Some(current) = record.as_mut() {
                    current.remarks.push(text.to_owned());
                }
            }
            Node::Close { .. } => {}
        }
        Ok(())
    })?;
    Ok(ParsedList::of_entries(entries, generated_on))
}

/// Files one opening element of an entity (everything the EU gives is in attributes).
fn open(record: &mut Record, name: &[u8], attributes: &Attributes<'_>) {
    match name {
        b"subjectType" => {
            // `person` and `enterprise` are the codes published; anything else is not a person.
            record.kind = Some(match attributes.get("code").as_deref() {
                Some("person") => EntityKind::Individual,
                _ => EntityKind::Entity,
            });
        }
        b"regulation" => {
            if let Some(programme) = attributes.get("programme")
                && !record.programs.contains(&programme)
            {
                record.programs.push(programme);
            }
        }
        b"nameAlias" => {
            let parts = ["firstName", "middleName", "lastName"].map(|k| attributes.get(k).unwrap_or_default());
            let joined = parts.iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>().join(" ");
            let whole = attributes.get("wholeName").unwrap_or(joined);
            let whole = whole.split_whitespace().collect::<Vec<_>>().join(" ");
            if !whole.is_empty() && !record.names.iter().any(|(n, _)| *n == whole) {
                record.names.push((whole, attributes.get("nameLanguage").unwrap_or_default()));
            }
            if let Some(title) = attributes.get("title")
                && !record.titles.contains(&title)
            {
                record.titles.push(title);
            }
            record.gender = record.gender.or(match attributes.get("gender").as_deref() {
                Some("M") => Some(Gender::Male),
                Some("F") => Some(Gender::Female),
                _ => None,
            });
        }
        b"birthdate" => {
            let span =
                match (attributes.get("birthdate"), attributes.get("yearRangeFrom"), attributes.get("yearRangeTo")) {
                    (Some(day), _, _) => crate::domain::parse_date(&day).map(|d| DobSpan { from: d, to: d }),
                    (None, Some(from), Some(to)) => parse_dob(&format!("{from} to {to}")),
                    _ => attributes.get("year").and_then(|year| match attributes.get("circa").as_deref() {
                        Some("true") => parse_dob(&format!("circa {year}")),
                        _ => parse_dob(&year),
                    }),
                };
            record.dobs.extend(span.filter(|s| !record.dobs.contains(s)));
            let place: Vec<String> = [attributes.get("city"), attributes.get("place"), known_country(attributes)]
                .into_iter()
                .flatten()
                .filter(|p| p != "-")
                .collect();
            if !place.is_empty() && !record.places_of_birth.contains(&place.join(", ")) {
                record.places_of_birth.push(place.join(", "));
            }
            record.country(attributes);
        }
        b"citizenship" => {
            if let Some(country) = known_country(attributes) {
                record.citizenships.push(country);
            }
            record.country(attributes);
        }
        b"address" => {
            let street = attributes.get("street");
            let city = attributes.get("city");
            let country = known_country(attributes);
            if street.is_some() || city.is_some() || country.is_some() {
                record.addresses.push(Address { street, city, country });
            }
            record.country(attributes);
        }
        b"identification" => {
            if let Some(number) = attributes.get("number") {
                record.documents.push(Document {
                    kind: attributes.get("identificationTypeDescription").unwrap_or_else(|| "Identification".into()),
                    number,
                    country: known_country(attributes),
                });
            }
        }
        _ => {}
    }
}

/// The country's name as the list gives it, unless it is the list's `UNKNOWN` (code `00`).
fn known_country(attributes: &Attributes<'_>) -> Option<String> {
    let code = attributes.get("countryIso2Code");
    if code.as_deref() == Some("00") {
        return None;
    }
    attributes.get("countryDescription")
}

fn entry(record: Record) -> Result<Entry, String> {
    let id = record.id;
    let latin = |(name, _): &&(String, String)| script_of(name) == "Latin";
    let english = |(_, language): &&(String, String)| language.is_empty() || language == "EN";
    let primary = record
        .names
        .iter()
        .position(|n| latin(&n) && english(&n))
        .or_else(|| record.names.iter().position(|n| latin(&n)))
        .or((!record.names.is_empty()).then_some(0))
        .ok_or_else(|| format!("entity {id} has no name"))?;
    let alt_names = record
        .names
        .iter()
        .enumerate()
        .filter(|(at, _)| *at != primary)
        .map(|(_, (name, _))| AltName {
            kind: if script_of(name) == "Latin" { "aka" } else { ORIGINAL_SCRIPT }.into(),
            name: name.clone(),
        })
        .collect();
    let mut remarks_text = String::new();
    for (label, reference) in [("EU reference", &record.reference), ("UN reference", &record.un_reference)] {
        if let Some(reference) = reference {
            remarks_text.push_str(&format!("{label} {reference}. "));
        }
    }
    remarks_text.push_str(&record.remarks.join(" "));
    Ok(Entry {
        id,
        name: record.names[primary].0.clone(),
        kind: record.kind.unwrap_or(EntityKind::Entity),
        programs: record.programs,
        title: (!record.titles.is_empty()).then(|| record.titles.join("; ")),
        remarks_text: remarks_text.trim_end().to_owned(),
        remarks: Remarks {
            dobs: record.dobs,
            places_of_birth: record.places_of_birth,
            citizenships: record.citizenships,
            gender: record.gender,
            documents: record.documents,
            ..Remarks::default()
        },
        alt_names,
        addresses: record.addresses,
        countries: record.countries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn fixture() -> ParsedList {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eu-small/eu_fsf.xml");
        parse_eu(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn parses_the_small_fixture() {
        let list = fixture();
        assert_eq!(list.generated_on, Some(date!(2026 - 08 - 05)));
        let ids: Vec<i64> = list.entries.iter().map(|e| e.id).collect();
        assert_eq!(ids, [191, 521, 6106]);
        assert_eq!(list.counts.entries, 3);

        let ksm = &list.entries[0];
        // The first alias in English or no language, not the French one listed first.
        assert_eq!(ksm.name, "Henin Ashraf Refaat Nabith");
        assert_eq!(ksm.kind, EntityKind::Individual);
        assert_eq!(ksm.programs, ["TERR"]);
        assert!(ksm.alt_names.iter().any(|a| a.name == "Khalid Sheikh MOHAMMED" && a.kind == "aka"));
        assert_eq!(ksm.alt_names.len(), 6);
        assert_eq!(ksm.remarks.gender, Some(Gender::Male));
        assert_eq!(
            ksm.remarks.dobs,
            [
                DobSpan { from: date!(1965 - 04 - 14), to: date!(1965 - 04 - 14) },
                DobSpan { from: date!(1964 - 03 - 01), to: date!(1964 - 03 - 01) }
            ]
        );
        assert_eq!(ksm.countries, ["PK"]);
        assert_eq!(ksm.remarks.documents[0].number, "488555");
        assert_eq!(ksm.remarks.documents[0].country, None, "UNKNOWN (00) is no country");
        assert!(ksm.remarks_text.starts_with("EU reference EU.3579.2."));

        let jan = &list.entries[1];
        assert_eq!(jan.remarks.dobs, [DobSpan { from: date!(1953 - 01 - 01), to: date!(1958 - 12 - 31) }]);
        assert_eq!(jan.remarks.citizenships, ["AFGHANISTAN"]);
        assert_eq!(jan.countries, ["AF"]);
        assert_eq!(jan.title.as_deref(), Some("Maulavi"));
        assert!(jan.remarks.places_of_birth.contains(&"Kandahar province, AFGHANISTAN".to_owned()));
        assert!(jan.remarks_text.contains("Believed to be in Afghanistan"));

        let dorda = &list.entries[2];
        assert_eq!(dorda.name, "Abu Zayd Umar DORDA");
        assert!(dorda.remarks_text.contains("UN reference LYi.006."));
        assert_eq!(dorda.countries, ["LY"]);
        assert_eq!(dorda.addresses[0].country.as_deref(), Some("LIBYA"));
    }

    #[test]
    fn names_in_another_script_are_original_script_names_and_enterprises_are_entities() {
        let xml = r#"<export xmlns="http://eu.europa.ec/fpi/fsd/export" generationDate="2026-08-05T16:47:04.449+02:00">
            <sanctionEntity logicalId="3822" euReferenceNumber="EU.3953.70">
              <subjectType code="enterprise" classificationCode="E"/>
              <nameAlias wholeName="صنایع شیمیایی پارچین" nameLanguage="FA"/>
              <nameAlias wholeName="Parchin Chemical Industries" nameLanguage="EN"/>
            </sanctionEntity></export>"#;
        let list = parse_eu(xml.as_bytes()).unwrap();
        let parchin = &list.entries[0];
        assert_eq!(parchin.kind, EntityKind::Entity);
        assert_eq!(parchin.name, "Parchin Chemical Industries");
        assert_eq!(parchin.alt_names[0].kind, ORIGINAL_SCRIPT);
    }

    #[test]
    fn refuses_what_is_not_a_list() {
        for bad in [
            r#"<export><sanctionEntity><nameAlias wholeName="X"/></sanctionEntity></export>"#,
            r#"<export><sanctionEntity logicalId="1"></sanctionEntity></export>"#,
            r#"<export><sanctionEntity logicalId="1"><sanctionEntity logicalId="2">"#,
            r#"<export><sanctionEntity logicalId="1"><nameAlias wholeName="X"/>"#,
        ] {
            let err = parse_eu(bad.as_bytes()).map(|l| l.entries.len()).unwrap_err();
            assert!(matches!(err, ParseError::Row { file: FILE, line: 1, .. }), "{bad}: {err}");
        }
    }
}
