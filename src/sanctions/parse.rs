//! The legacy OFAC CSV files and the free-text Remarks field.
//!
//! The files have no header, CRLF line ends, Latin-1 text, `"`-quoted fields, the null marker `-0-`
//! (with a trailing space, unquoted) and sometimes a lone 0x1A (DOS end-of-file) as the last line.
//! The `csv` crate does the quoting; this module does the rest.

use std::collections::HashMap;

use time::{Date, Month};

use super::countries::COUNTRY_NAMES;
pub use crate::domain::sanctions_list::{ListCounts, ListFiles, ListSource};

crate::domain::wire_enum! {
    #[derive(serde::Serialize, serde::Deserialize, clap::ValueEnum, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum EntityKind { Individual = "individual", Entity = "entity", Vessel = "vessel", Aircraft = "aircraft" }
}

/// A date of birth as OFAC gives it: a day, a month, a year, `circa` a year, or a range. Kept as
/// the inclusive span of days it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DobSpan {
    pub from: Date,
    pub to: Date,
}

impl DobSpan {
    pub fn is_exact(&self) -> bool {
        self.from == self.to
    }

    pub fn contains(&self, date: Date) -> bool {
        self.from <= date && date <= self.to
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub kind: String,
    pub number: String,
    pub country: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gender {
    Male,
    Female,
}

/// What the Remarks field says, in structured form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remarks {
    pub dobs: Vec<DobSpan>,
    pub places_of_birth: Vec<String>,
    pub nationalities: Vec<String>,
    pub citizenships: Vec<String>,
    pub gender: Option<Gender>,
    pub documents: Vec<Document>,
    pub aliases: Vec<String>,
    pub linked_to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AltName {
    /// `aka`, `fka` or `nka`.
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub street: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub name: String,
    pub kind: EntityKind,
    pub programs: Vec<String>,
    pub title: Option<String>,
    pub remarks_text: String,
    pub remarks: Remarks,
    pub alt_names: Vec<AltName>,
    pub addresses: Vec<Address>,
    /// ISO 3166-1 alpha-2 codes from nationality, citizenship, place of birth and addresses.
    pub countries: Vec<&'static str>,
}

impl Entry {
    /// The identity of what the list says about this entry: SHA-256 (first 16 bytes, hex) over
    /// its names, type, programs, title, remarks (dates of birth, documents, nationalities,
    /// aliases), alternative names and addresses, each field length-prefixed and the repeated
    /// ones sorted (the Treasury's row order carries no meaning). A compliance clearance holds
    /// while it is unchanged.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        let mut field = |text: &str| {
            hasher.update((text.len() as u64).to_be_bytes());
            hasher.update(text.as_bytes());
        };
        field(&self.name);
        field(self.kind.as_str());
        let mut programs = self.programs.clone();
        programs.sort();
        let mut alt_names: Vec<String> = self.alt_names.iter().map(|a| format!("{}\u{1f}{}", a.kind, a.name)).collect();
        alt_names.sort();
        let mut addresses: Vec<String> = self
            .addresses
            .iter()
            .map(|a| {
                let part = |p: &Option<String>| p.clone().unwrap_or_default();
                format!("{}\u{1f}{}\u{1f}{}", part(&a.street), part(&a.city), part(&a.country))
            })
            .collect();
        addresses.sort();
        for (label, repeated) in [("programs", programs), ("alt", alt_names), ("addresses", addresses)] {
            field(label);
            field(&repeated.len().to_string());
            repeated.iter().for_each(|value| field(value));
        }
        field(self.title.as_deref().unwrap_or_default());
        field(&self.remarks_text);
        hex::encode(&hasher.finalize()[..16])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{file} line {line}: {problem}")]
    Row { file: &'static str, line: u64, problem: String },
    #[error("{0} holds no entries")]
    Empty(&'static str),
    #[error("{file} holds entry {id} twice")]
    Duplicate { file: &'static str, id: i64 },
}

pub struct ParsedList {
    pub entries: Vec<Entry>,
    pub counts: ListCounts,
    /// The day the publication says it was generated, when it says (the XML lists do).
    pub generated_on: Option<Date>,
}

impl ParsedList {
    /// A list read from one document: the counts are what its entries hold.
    pub(super) fn of_entries(entries: Vec<Entry>, generated_on: Option<Date>) -> Self {
        let counts = ListCounts {
            entries: entries.len() as u64,
            alt_rows: entries.iter().map(|e| e.alt_names.len() as u64).sum(),
            address_rows: entries.iter().map(|e| e.addresses.len() as u64).sum(),
            comment_rows: 0,
            orphan_rows: 0,
        };
        Self { entries, counts, generated_on }
    }
}

/// Parses OFAC's four CSV files (the SDN list's or the consolidated list's: one format under
/// two sets of names). Only the first is required; the others may be empty.
pub fn parse_ofac(files: &ListFiles) -> Result<ParsedList, ParseError> {
    let &[primary, alt_file, add_file, comments_file] = files.names() else {
        unreachable!("OFAC publications have four files")
    };
    let mut counts = ListCounts::default();
    let mut entries = Vec::new();
    let mut position: HashMap<i64, usize> = HashMap::new();

    for (line, row) in rows(files.nth(0), primary)? {
        let id = ent_num(&row, primary, line)?;
        let kind = match field(&row, 2).as_deref() {
            None => EntityKind::Entity,
            Some("individual") => EntityKind::Individual,
            Some("vessel") => EntityKind::Vessel,
            Some("aircraft") => EntityKind::Aircraft,
            Some(other) => {
                return Err(ParseError::Row { file: primary, line, problem: format!("unknown SDN_Type {other:?}") });
            }
        };
        let name = field(&row, 1).ok_or_else(|| ParseError::Row {
            file: primary,
            line,
            problem: "SDN_Name is empty".into(),
        })?;
        let programs = field(&row, 3)
            .map(|p| p.split("] [").map(|s| s.trim_matches(['[', ']', ' ']).to_owned()).collect())
            .unwrap_or_default();
        position.insert(id, entries.len());
        entries.push(Entry {
            id,
            name,
            kind,
            programs,
            title: field(&row, 4),
            remarks_text: field(&row, 11).unwrap_or_default(),
            remarks: Remarks::default(),
            alt_names: Vec::new(),
            addresses: Vec::new(),
            countries: Vec::new(),
        });
    }
    if entries.is_empty() {
        return Err(ParseError::Empty(primary));
    }
    counts.entries = entries.len() as u64;

    for (line, row) in rows(files.nth(3), comments_file)? {
        counts.comment_rows += 1;
        match position.get(&ent_num(&row, comments_file, line)?) {
            Some(&at) => {
                if let Some(more) = field(&row, 1) {
                    entries[at].remarks_text.push_str(&more);
                }
            }
            None => counts.orphan_rows += 1,
        }
    }
    for (line, row) in rows(files.nth(1), alt_file)? {
        counts.alt_rows += 1;
        let Some(&at) = position.get(&ent_num(&row, alt_file, line)?) else {
            counts.orphan_rows += 1;
            continue;
        };
        if let Some(name) = field(&row, 3) {
            let kind = field(&row, 2).unwrap_or_else(|| "aka".into());
            entries[at].alt_names.push(AltName { kind, name });
        }
    }
    for (line, row) in rows(files.nth(2), add_file)? {
        counts.address_rows += 1;
        let Some(&at) = position.get(&ent_num(&row, add_file, line)?) else {
            counts.orphan_rows += 1;
            continue;
        };
        let address = Address { street: field(&row, 2), city: field(&row, 3), country: field(&row, 4) };
        if address.street.is_some() || address.city.is_some() || address.country.is_some() {
            entries[at].addresses.push(address);
        }
    }

    for entry in &mut entries {
        entry.remarks = parse_remarks(&entry.remarks_text);
        let named = entry
            .remarks
            .nationalities
            .iter()
            .chain(&entry.remarks.citizenships)
            .map(String::as_str)
            .chain(entry.addresses.iter().filter_map(|a| a.country.as_deref()))
            .chain(entry.remarks.places_of_birth.iter().filter_map(|p| p.rsplit(',').next()));
        entry.countries = country_codes(named);
    }
    Ok(ParsedList { entries, counts, generated_on: None })
}

type Row = csv::ByteRecord;

fn rows(bytes: &[u8], file: &'static str) -> Result<Vec<(u64, Row)>, ParseError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut out = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                // The DOS end-of-file marker some publications end with.
                if record.len() == 1 && record[0].iter().all(|b| *b == 0x1A || b.is_ascii_whitespace()) {
                    continue;
                }
                out.push((line, record.clone()));
            }
            Err(e) => return Err(ParseError::Row { file, line, problem: e.to_string() }),
        }
    }
    Ok(out)
}

/// A field as text: Latin-1 decoded, trimmed, and `None` for the null marker or an empty field.
fn field(row: &Row, at: usize) -> Option<String> {
    let raw = row.get(at)?;
    // Latin-1 maps each byte to the code point of the same value.
    let text: String = raw.iter().map(|&b| b as char).collect();
    let text = text.trim();
    (!text.is_empty() && text != "-0-").then(|| text.to_owned())
}

fn ent_num(row: &Row, file: &'static str, line: u64) -> Result<i64, ParseError> {
    field(row, 0).and_then(|s| s.parse().ok()).ok_or_else(|| ParseError::Row {
        file,
        line,
        problem: "ent_num is not a number".into(),
    })
}

/// Splits Remarks into its `;`-separated statements and reads the ones screening uses.
pub fn parse_remarks(text: &str) -> Remarks {
    let mut remarks = Remarks::default();
    for statement in split_statements(text) {
        let statement = statement.trim().trim_end_matches('.').trim();
        let plain = statement.strip_prefix("alt. ").unwrap_or(statement);
        if let Some(rest) = plain.strip_prefix("DOB ") {
            remarks.dobs.extend(parse_dob(rest));
        } else if let Some(rest) = plain.strip_prefix("POB ") {
            remarks.places_of_birth.push(rest.trim().to_owned());
        } else if let Some(rest) = plain.strip_prefix("nationality ") {
            remarks.nationalities.push(rest.trim().to_owned());
        } else if let Some(rest) = plain.strip_prefix("citizen ") {
            remarks.citizenships.push(rest.trim().to_owned());
        } else if let Some(rest) = plain.strip_prefix("Gender ") {
            remarks.gender = match rest.trim() {
                "Male" => Some(Gender::Male),
                "Female" => Some(Gender::Female),
                _ => None,
            };
        } else if let Some(rest) = ["a.k.a. ", "f.k.a. ", "n.k.a. "].iter().find_map(|p| plain.strip_prefix(p)) {
            let name = rest.trim().trim_matches(['\'', '"']).trim();
            if !name.is_empty() {
                remarks.aliases.push(name.to_owned());
            }
        } else if let Some(rest) = plain.strip_prefix("Linked To: ") {
            remarks.linked_to.push(rest.trim().to_owned());
        } else if let Some(document) = parse_document(plain) {
            remarks.documents.push(document);
        }
    }
    remarks
}

/// `;` separates statements, except inside a quoted a.k.a. (`a.k.a. 'A; B'`).
fn split_statements(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' => {
                // An apostrophe inside a word (O'BRIEN) does not open a quote.
                let inner = i > 0
                    && bytes[i - 1].is_ascii_alphabetic()
                    && bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic);
                if !inner {
                    quoted = !quoted;
                }
            }
            b';' if !quoted => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

const DOCUMENT_KINDS: [&str; 8] = [
    "Passport",
    "National ID No.",
    "Cedula No.",
    "Identification Number",
    "Tax ID No.",
    "SSN",
    "NIT #",
    "Registration Number",
];

fn parse_document(statement: &str) -> Option<Document> {
    let kind = DOCUMENT_KINDS.iter().find(|k| statement.starts_with(**k))?;
    let rest = statement[kind.len()..].trim();
    let (number, country) = match rest.find(" (") {
        Some(open) => {
            let country = rest[open + 2..].split(')').next().map(|c| c.trim().to_owned());
            (rest[..open].trim(), country)
        }
        None => (rest, None),
    };
    (!number.is_empty()).then(|| Document {
        kind: kind.trim_end_matches(['.', '#', ' ']).to_owned(),
        number: number.to_owned(),
        country,
    })
}

/// `23 Nov 1962`, `Nov 1962`, `1962`, `circa 1962`, `1960 to 1962`, `01 Jan 1960 to 31 Dec 1962`.
pub fn parse_dob(text: &str) -> Option<DobSpan> {
    let text = text.trim();
    if let Some(year) = text.strip_prefix("circa ") {
        // OFAC gives no width for circa; two years either side is what reviewers assume.
        let span = parse_dob_part(year.trim())?;
        return Some(DobSpan { from: shift_years(span.from, -2), to: shift_years(span.to, 2) });
    }
    if let Some((from, to)) = text.split_once(" to ") {
        let (from, to) = (parse_dob_part(from.trim())?, parse_dob_part(to.trim())?);
        return (from.from <= to.to).then_some(DobSpan { from: from.from, to: to.to });
    }
    parse_dob_part(text)
}

fn parse_dob_part(text: &str) -> Option<DobSpan> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    match parts.as_slice() {
        [year] => {
            let year = year.parse().ok()?;
            Some(DobSpan {
                from: Date::from_calendar_date(year, Month::January, 1).ok()?,
                to: Date::from_calendar_date(year, Month::December, 31).ok()?,
            })
        }
        [month, year] => {
            let (month, year) = (month_of(month)?, year.parse().ok()?);
            let from = Date::from_calendar_date(year, month, 1).ok()?;
            let to = Date::from_calendar_date(year, month, month.length(year)).ok()?;
            Some(DobSpan { from, to })
        }
        [day, month, year] => {
            let date = Date::from_calendar_date(year.parse().ok()?, month_of(month)?, day.parse().ok()?).ok()?;
            Some(DobSpan { from: date, to: date })
        }
        _ => None,
    }
}

fn month_of(text: &str) -> Option<Month> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let at = MONTHS.iter().position(|m| text.get(..3).is_some_and(|t| t.eq_ignore_ascii_case(m)))?;
    Month::try_from(at as u8 + 1).ok()
}

fn shift_years(date: Date, years: i32) -> Date {
    let year = date.year() + years;
    Date::from_calendar_date(year, date.month(), date.day().min(date.month().length(year))).unwrap_or(date)
}

/// Folds a country name the way the table's keys are folded.
fn fold_country(name: &str) -> String {
    let ascii = deunicode::deunicode(name);
    let words: Vec<String> = ascii
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    words.join(" ")
}

/// The ISO 3166-1 alpha-2 code for a country as OFAC (or ISO) names it.
pub fn country_code(name: &str) -> Option<&'static str> {
    let key = fold_country(name);
    let key = key.strip_prefix("possibly ").unwrap_or(&key);
    COUNTRY_NAMES.binary_search_by(|(k, _)| k.cmp(&key)).ok().map(|at| COUNTRY_NAMES[at].1)
}

/// The ISO codes of the countries `names` name, each once, in the order first named (names the
/// table does not know are left out): what every list reader files as an entry's countries.
pub(super) fn country_codes<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'static str> {
    let mut codes: Vec<&'static str> = Vec::new();
    for code in names.filter_map(country_code) {
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// The table's own copy of an ISO 3166-1 alpha-2 code (`"AF"` → `Some("AF")`), for lists that
/// give codes rather than names.
pub fn known_code(code: &str) -> Option<&'static str> {
    COUNTRY_NAMES.iter().map(|(_, c)| *c).find(|c| c.eq_ignore_ascii_case(code))
}

/// Whether `code` is an ISO 3166-1 alpha-2 code the table knows (or the user-assigned `XK`).
pub fn is_country_code(code: &str) -> bool {
    COUNTRY_NAMES.iter().any(|(_, c)| *c == code)
}

/// The parsers meet whatever the Treasury (or a mirror, or a truncated download) serves: no input
/// may panic them, since a panic would stop a list load half-way.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// One CSV field as the Treasury writes them: a number, `-0- `, a quoted text (with `""`
    /// escapes), or anything at all.
    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{1,6}",
            Just("-0- ".to_owned()),
            "[ -~]{0,30}".prop_map(|t| format!("\"{}\"", t.replace('"', "\"\""))),
            ".{0,20}",
        ]
    }

    fn csv(columns: usize) -> impl Strategy<Value = Vec<u8>> {
        let row = prop::collection::vec(field(), 1..columns + 2).prop_map(|fields| fields.join(","));
        prop::collection::vec(row, 0..8).prop_map(|rows| rows.join("\r\n").into_bytes())
    }

    /// Remarks as the list writes them, with fragments mixed in.
    fn remarks() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            "DOB [0-9]{1,2} [A-Z][a-z]{2} [0-9]{4}",
            "DOB (circa )?[0-9]{4}( to [0-9]{4})?",
            "POB [A-Za-z, ]{0,20}",
            "nationality [A-Za-z ]{0,12}",
            "Passport [A-Z0-9]{0,10} \\([A-Za-z ]{0,10}\\)",
            "a\\.k\\.a\\. '[A-Z ]{0,12}'",
            "Gender (Male|Female)",
            ".{0,30}",
        ];
        prop::collection::vec(part, 0..6).prop_map(|parts| parts.join("; "))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn remarks_and_dates_never_panic(text in remarks()) {
            let _ = parse_remarks(&text);
            let _ = parse_dob(&text);
        }

        #[test]
        fn list_files_never_panic(sdn in csv(12), alt in csv(5), add in csv(6), comments in csv(3)) {
            let _ = parse_ofac(&ListFiles::of(ListSource::OfacSdn, [sdn, alt, add, comments]));
        }

        #[test]
        fn arbitrary_bytes_never_panic(sdn in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_ofac(&ListFiles::of(ListSource::OfacSdn, [sdn]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn small() -> ListFiles {
        crate::sanctions::test_files("tests/fixtures/ofac-small")
    }

    #[test]
    fn parses_the_small_fixture() {
        let list = parse_ofac(&small()).unwrap();
        assert_eq!(list.counts.entries, 17);
        let moreno = list.entries.iter().find(|e| e.id == 15102).unwrap();
        assert_eq!(moreno.name, "MORENO, Daniel");
        assert_eq!(moreno.kind, EntityKind::Individual);
        assert_eq!(moreno.programs, ["SDNTK"]);
        assert_eq!(moreno.remarks.dobs, [DobSpan { from: date!(1972 - 10 - 12), to: date!(1972 - 10 - 12) }]);
        assert_eq!(moreno.remarks.places_of_birth, ["Corozal, Belize"]);
        assert_eq!(
            moreno.remarks.documents[0],
            Document { kind: "Passport".into(), number: "0291622".into(), country: Some("Belize".into()) }
        );
        assert_eq!(moreno.countries, ["BZ"]);
        let iran = list.entries.iter().find(|e| e.id == 11195).unwrap();
        assert_eq!(iran.kind, EntityKind::Entity);
        assert_eq!(iran.programs, ["NPWMD", "IFSR", "IRAN-CON-ARMS-EO"]);
        assert!(iran.remarks.aliases.contains(&"HESA".to_owned()));
        assert!(iran.remarks.linked_to.contains(&"ISLAMIC REVOLUTIONARY GUARD CORPS".to_owned()));
    }

    #[test]
    fn null_markers_eof_byte_and_orphans() {
        let files = ListFiles::of(ListSource::OfacSdn, [
            b"1,\"DOE, John\",\"individual\",\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,\"DOB circa 1970; nationality Korea, North.\"\r\n2,\"ACME TRADING CO.\",-0- ,\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n\x1a".to_vec(),
            b"1,10,\"aka\",\"DOE, Johnny\",-0- \r\n99,11,\"aka\",\"NOBODY\",-0- \r\n".to_vec(),
            b"2,20,-0- ,\"Dubai\",\"United Arab Emirates\",-0- \r\n".to_vec(),
        ]);
        let list = parse_ofac(&files).unwrap();
        assert_eq!(
            list.counts,
            ListCounts { entries: 2, alt_rows: 2, address_rows: 1, comment_rows: 0, orphan_rows: 1 }
        );
        let doe = &list.entries[0];
        assert_eq!(doe.title, None);
        assert_eq!(doe.remarks.dobs, [DobSpan { from: date!(1968 - 01 - 01), to: date!(1972 - 12 - 31) }]);
        assert_eq!(doe.countries, ["KP"]);
        assert_eq!(doe.alt_names, [AltName { kind: "aka".into(), name: "DOE, Johnny".into() }]);
        assert_eq!(list.entries[1].kind, EntityKind::Entity);
        assert_eq!(list.entries[1].remarks_text, "");
        assert_eq!(list.entries[1].countries, ["AE"]);
    }

    #[test]
    fn dob_forms() {
        assert_eq!(parse_dob("23 Nov 1962"), Some(DobSpan { from: date!(1962 - 11 - 23), to: date!(1962 - 11 - 23) }));
        assert_eq!(parse_dob("Feb 1964"), Some(DobSpan { from: date!(1964 - 02 - 01), to: date!(1964 - 02 - 29) }));
        assert_eq!(parse_dob("1960 to 1962"), Some(DobSpan { from: date!(1960 - 01 - 01), to: date!(1962 - 12 - 31) }));
        assert_eq!(
            parse_dob("01 Jan 1960 to 31 Mar 1960"),
            Some(DobSpan { from: date!(1960 - 01 - 01), to: date!(1960 - 03 - 31) })
        );
        assert_eq!(parse_dob("31 Feb 1960"), None);
        let remarks = parse_remarks(
            "DOB 01 Jan 1958; alt. DOB 1959; POB Sana'a, Yemen; alt. nationality Yemen; Gender Female; a.k.a. 'AL-AHMAR; THE RED'.",
        );
        assert_eq!(remarks.dobs.len(), 2);
        assert_eq!(remarks.places_of_birth, ["Sana'a, Yemen"]);
        assert_eq!(remarks.nationalities, ["Yemen"]);
        assert_eq!(remarks.gender, Some(Gender::Female));
        assert_eq!(remarks.aliases, ["AL-AHMAR; THE RED"]);
    }

    #[test]
    fn country_names() {
        assert_eq!(country_code("Korea, North"), Some("KP"));
        assert_eq!(country_code("Venezuela"), Some("VE"));
        assert_eq!(country_code(" Burma"), Some("MM"));
        assert_eq!(country_code("Region: Crimea"), Some("UA"));
        assert_eq!(country_code("Côte d'Ivoire"), Some("CI"));
        assert_eq!(country_code("undetermined"), None);
        assert!(COUNTRY_NAMES.windows(2).all(|w| w[0].0 < w[1].0), "the table must stay sorted");
    }

    #[test]
    fn parses_the_full_snapshot() {
        let list = parse_ofac(&crate::sanctions::test_files("data/ofac")).unwrap();
        assert_eq!(list.counts.entries, 14_965);
        let kinds = |k| list.entries.iter().filter(|e| e.kind == k).count();
        assert_eq!((kinds(EntityKind::Individual), kinds(EntityKind::Entity)), (6_854, 6_884));
        assert_eq!((kinds(EntityKind::Vessel), kinds(EntityKind::Aircraft)), (851, 376));
        assert!(list.counts.orphan_rows > 0, "alt/add rows of removed entries are skipped");
        let maduro = list.entries.iter().find(|e| e.id == 22790).unwrap();
        assert_eq!(maduro.remarks.dobs[0].from, date!(1962 - 11 - 23));
        assert_eq!(maduro.countries, ["VE"]);
    }
}
