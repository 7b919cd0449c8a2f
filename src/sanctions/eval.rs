//! The evaluation set: queries built from the loaded list (listed names and the variants people
//! really type: reordered, case and accents changed, a typo, a middle name left out, an alias)
//! and from common names that are not listed. The quality test scores the engine on it; the
//! benchmark times queries from it. Generation is deterministic (a fixed-seed xorshift), so the
//! figures are comparable run to run.

use time::{Date, Month};

use super::index::{Decision, Query, SanctionsIndex};
use super::normalize::{is_particle, script_of, tokens};
use super::parse::{EntityKind, Entry};

#[derive(Debug, Clone)]
pub struct Probe {
    pub query: Query,
    /// The entry the query is about.
    pub target: i64,
    pub variant: &'static str,
}

/// Recall and false-positive figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub listed_queries: usize,
    pub listed_top1: usize,
    /// Hits where another listed person has exactly the queried name and ranks first: the engine
    /// is right to put the namesake first, and the target is flagged too.
    pub listed_namesake: usize,
    /// Listed queries whose top candidate reached at least `review`.
    pub listed_flagged: usize,
    pub misses: Vec<String>,
    pub common_queries: usize,
    pub common_review: usize,
    pub common_match: usize,
    pub false_positives: Vec<String>,
}

impl Report {
    pub fn recall(&self) -> f64 {
        self.listed_top1 as f64 / self.listed_queries.max(1) as f64
    }

    pub fn review_rate(&self) -> f64 {
        self.common_review as f64 / self.common_queries.max(1) as f64
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Listed names and their variants, from every `stride`-th entry.
pub fn listed_probes(index: &SanctionsIndex, stride: usize) -> Vec<Probe> {
    let mut rng = XorShift(0x5EED_0FAC);
    let mut probes = Vec::new();
    for entry in index.entries().iter().step_by(stride.max(1)) {
        let dob = entry.remarks.dobs.iter().find(|d| d.is_exact()).map(|d| d.from);
        let probe = |name: String, variant: &'static str| Probe {
            query: Query { name, date_of_birth: dob, country: None, kind: None },
            target: entry.id,
            variant,
        };
        let (first, last) = split_person(entry);
        probes.push(probe(entry.name.clone(), "as listed"));
        if entry.kind == EntityKind::Individual && !first.is_empty() {
            probes.push(probe(format!("{first} {last}"), "first last"));
            probes.push(probe(format!("{} {}", first.to_lowercase(), last.to_lowercase()), "lower case"));
            probes.push(probe(accented(&format!("{first} {last}")), "accents added"));
            let first_words: Vec<&str> = first.split_whitespace().collect();
            // Dropping a word of a compound (`Abd al-Hadi`) is not leaving out a middle name.
            let lead = tokens(first_words.first().copied().unwrap_or_default());
            if first_words.len() >= 2 && lead.len() == 1 && !is_particle(&lead[0]) {
                probes.push(probe(format!("{} {last}", first_words[0]), "middle name left out"));
            }
        }
        if let Some(typo) = typo(&entry.name, &mut rng) {
            probes.push(probe(typo, "one typo"));
        }
        if let Some(alias) = entry.alt_names.first() {
            probes.push(probe(alias.name.clone(), "alias"));
        }
    }
    probes
}

/// `LAST, First Middle` → (`First Middle`, `LAST`); entities → ("", name).
fn split_person(entry: &Entry) -> (String, String) {
    match entry.name.split_once(',') {
        Some((last, first)) if entry.kind == EntityKind::Individual && !first.contains(',') => {
            (first.trim().to_owned(), last.trim().to_owned())
        }
        _ => (String::new(), entry.name.clone()),
    }
}

/// Adds the accents a Spanish or Portuguese spelling would (`Nicolas` → `Nicolás`).
fn accented(name: &str) -> String {
    let mut done = false;
    name.chars()
        .map(|c| match c {
            'a' if !done => {
                done = true;
                'á'
            }
            'e' => 'é',
            'o' => 'ö',
            'n' => 'ñ',
            other => other,
        })
        .collect()
}

/// One typing mistake in the longest word (of six letters or more): a swap, a drop or a double.
/// Codes (aircraft marks, numbers) are not names and are not misspelt here: they match exactly.
fn typo(name: &str, rng: &mut XorShift) -> Option<String> {
    let words: Vec<&str> = name.split_whitespace().collect();
    let (at, word) = words
        .iter()
        .enumerate()
        .filter(|(_, w)| w.len() >= 6 && w.bytes().all(|b| b.is_ascii_alphabetic()))
        .max_by_key(|(_, w)| w.len())?;
    let mut chars: Vec<char> = word.chars().collect();
    let i = 1 + rng.below(chars.len() - 3);
    match rng.below(3) {
        0 => chars.swap(i, i + 1),
        1 => {
            chars.remove(i);
        }
        _ => chars.insert(i, chars[i]),
    }
    let mut out: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    out[at] = chars.into_iter().collect();
    Some(out.join(" "))
}

const FIRST_NAMES: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Nancy",
    "Daniel",
    "Lisa",
    "Matthew",
    "Betty",
    "Anthony",
    "Margaret",
    "Mark",
    "Sandra",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Paul",
    "Emily",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "Jose",
    "Maria",
    "Juan",
    "Guadalupe",
    "Luis",
    "Rosa",
    "Carlos",
    "Ana",
    "Jorge",
    "Laura",
    "Miguel",
    "Sofia",
    "Alejandro",
    "Valentina",
    "Fernando",
    "Gabriela",
    "Ricardo",
    "Daniela",
    "Javier",
    "Fernanda",
    "Emma",
    "Olivia",
    "Noah",
    "Liam",
    "Wei",
    "Priya",
    "Anh",
    "Yuki",
    "Fatima",
    "Omar",
    "Aisha",
    "Hassan",
    "Olga",
    "Ivan",
    "Chen",
    "Raj",
    "Kwame",
    "Amara",
];

const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Hill",
    "Campbell",
    "Mitchell",
    "Garcia",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Perez",
    "Sanchez",
    "Ramirez",
    "Torres",
    "Flores",
    "Rivera",
    "Gomez",
    "Diaz",
    "Reyes",
    "Cruz",
    "Morales",
    "Ortiz",
    "Gutierrez",
    "Chavez",
    "Ramos",
    "Ruiz",
    "Mendoza",
    "Vargas",
    "Castillo",
    "Jimenez",
    "Nguyen",
    "Patel",
    "Kim",
    "Wang",
    "Singh",
    "Tanaka",
    "Okafor",
    "Ivanova",
    "Schmidt",
    "Rossi",
    "Dubois",
    "Kowalski",
    "Silva",
    "Santos",
    "Costa",
];

/// Common names (first × last, some with a second surname) that the list does not hold, each
/// with a date of birth and a country as an onboarding form would have them.
pub fn common_probes(index: &SanctionsIndex, count: usize) -> Vec<Query> {
    let mut rng = XorShift(0xC0FF_EE11);
    let listed: std::collections::HashSet<Vec<String>> = index
        .entries()
        .iter()
        .flat_map(|e| std::iter::once(&e.name).chain(e.alt_names.iter().map(|a| &a.name)))
        .map(|n| sorted(tokens(n)))
        .collect();
    let countries = ["US", "MX", "US", "MX", "CO", "GB", "ES", "CA"];
    let mut out = Vec::with_capacity(count);
    let mut guard = 0;
    while out.len() < count && guard < count * 10 {
        guard += 1;
        let first = FIRST_NAMES[rng.below(FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.below(LAST_NAMES.len())];
        let name = if rng.below(3) == 0 {
            format!("{first} {last} {}", LAST_NAMES[rng.below(LAST_NAMES.len())])
        } else {
            format!("{first} {last}")
        };
        if listed.contains(&sorted(tokens(&name))) {
            continue;
        }
        let year = 1950 + rng.below(55) as i32;
        let month = Month::try_from(1 + rng.below(12) as u8).unwrap_or(Month::January);
        let day = 1 + rng.below(28) as u8;
        out.push(Query {
            name,
            date_of_birth: Date::from_calendar_date(year, month, day).ok(),
            country: Some(countries[rng.below(countries.len())].to_owned()),
            kind: None,
        });
    }
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Runs both sets and counts.
pub fn evaluate(index: &SanctionsIndex, stride: usize, common: usize) -> Report {
    let mut report = Report::default();
    for probe in listed_probes(index, stride) {
        report.listed_queries += 1;
        let found = index.screen(&probe.query);
        let Some(top) = found.first() else {
            report.misses.push(format!("{} [{}]: {:?} found nothing", probe.target, probe.variant, probe.query.name));
            continue;
        };
        report.listed_flagged += 1;
        // Ties count: the list holds some names twice (a person and a namesake entry).
        let hit = found.iter().take_while(|c| c.score >= top.score).any(|c| c.entity_id == probe.target);
        let namesake = top.name_score >= 1.0 && found.iter().any(|c| c.entity_id == probe.target);
        if hit {
            report.listed_top1 += 1;
        } else if namesake {
            report.listed_top1 += 1;
            report.listed_namesake += 1;
        } else {
            report.misses.push(format!(
                "{} [{}]: {:?} ranked {} {:?} ({:.3}) first",
                probe.target, probe.variant, probe.query.name, top.entity_id, top.matched_name, top.score
            ));
        }
    }
    for query in common_probes(index, common) {
        report.common_queries += 1;
        let found = index.screen(&query);
        match found.first().map(|c| c.decision) {
            Some(Decision::Match) => report.common_match += 1,
            Some(Decision::Review) => report.common_review += 1,
            _ => continue,
        }
        let top = &found[0];
        report.false_positives.push(format!(
            "{:?} → {} {:?} {:.3} ({})",
            query.name,
            top.entity_id,
            top.matched_name,
            top.score,
            top.reasons.join("; ")
        ));
    }
    report
}

/// Common Arabic given names and family names with a usual Latin spelling of each, hand-picked
/// from names frequent across Egypt, the Levant, Iraq, the Gulf and the Maghreb. Not a frequency
/// table: a population of ordinary people, most of whom are not listed, in both scripts.
const ARABIC_GIVEN: &[(&str, &str)] = &[
    ("محمد", "Mohammed"),
    ("أحمد", "Ahmed"),
    ("علي", "Ali"),
    ("حسن", "Hassan"),
    ("حسين", "Hussein"),
    ("عمر", "Omar"),
    ("خالد", "Khaled"),
    ("يوسف", "Youssef"),
    ("إبراهيم", "Ibrahim"),
    ("محمود", "Mahmoud"),
    ("مصطفى", "Mustafa"),
    ("عبد الله", "Abdullah"),
    ("عبد الرحمن", "Abdulrahman"),
    ("سعيد", "Saeed"),
    ("كريم", "Karim"),
    ("طارق", "Tariq"),
    ("سامي", "Sami"),
    ("وليد", "Walid"),
    ("ياسر", "Yasser"),
    ("فاطمة", "Fatima"),
    ("عائشة", "Aisha"),
    ("مريم", "Maryam"),
    ("نور", "Nour"),
    ("سارة", "Sara"),
    ("ليلى", "Layla"),
    ("هدى", "Huda"),
    ("زينب", "Zainab"),
    ("رنا", "Rana"),
    ("دينا", "Dina"),
    ("سلمى", "Salma"),
    // Compounds, which are also screened in a second, glued reading.
    ("نور الدين", "Nour El Din"),
    ("صلاح الدين", "Salah El Din"),
    ("علاء الدين", "Alaa El Din"),
    ("شمس الدين", "Shams El Din"),
    ("فضل الرحمن", "Fazal ur Rehman"),
    ("محمد جان", "Mohammad Jan"),
];

const ARABIC_FAMILY: &[(&str, &str)] = &[
    ("المصري", "Al-Masri"),
    ("الخطيب", "Al-Khatib"),
    ("حداد", "Haddad"),
    ("النجار", "Al-Najjar"),
    ("السيد", "El-Sayed"),
    ("منصور", "Mansour"),
    ("صالح", "Saleh"),
    ("الشريف", "Al-Sharif"),
    ("الحسيني", "Al-Husseini"),
    ("التميمي", "Al-Tamimi"),
    ("العمري", "Al-Omari"),
    ("الزعبي", "Al-Zoubi"),
    ("الفاسي", "El Fassi"),
    ("العلوي", "Alaoui"),
    ("حمدان", "Hamdan"),
    ("عثمان", "Othman"),
    ("جابر", "Jaber"),
    ("القاضي", "El-Kadi"),
    ("الرفاعي", "Al-Rifai"),
    ("الدباغ", "Al-Dabbagh"),
];

/// Common names in Arabic script (given name, father's name in a third of them, family name),
/// each with the same name in Latin letters, a date of birth and a country, screened as
/// onboarding screens a person: against individuals.
pub fn arabic_common_probes(count: usize) -> Vec<(Query, Query)> {
    let mut rng = XorShift(0xA7AB_1C00);
    let countries = ["EG", "JO", "IQ", "SA", "MA", "AE", "US", "DE"];
    (0..count)
        .map(|_| {
            let given = ARABIC_GIVEN[rng.below(ARABIC_GIVEN.len())];
            let father = ARABIC_GIVEN[rng.below(ARABIC_GIVEN.len())];
            let family = ARABIC_FAMILY[rng.below(ARABIC_FAMILY.len())];
            let (arabic, latin) = if rng.below(3) == 0 {
                (format!("{} {} {}", given.0, father.0, family.0), format!("{} {} {}", given.1, father.1, family.1))
            } else {
                (format!("{} {}", given.0, family.0), format!("{} {}", given.1, family.1))
            };
            let year = 1950 + rng.below(55) as i32;
            let month = Month::try_from(1 + rng.below(12) as u8).unwrap_or(Month::January);
            let date_of_birth = Date::from_calendar_date(year, month, 1 + rng.below(28) as u8).ok();
            let country = Some(countries[rng.below(countries.len())].to_owned());
            // As onboarding screens a person: against individuals only.
            let kind = Some(EntityKind::Individual);
            let query = |name: String| Query { name, date_of_birth, country: country.clone(), kind };
            (query(arabic), query(latin))
        })
        .collect()
}

/// How often common names are flagged: `(review, match)` counts.
pub fn flag_counts<'a>(index: &SanctionsIndex, queries: impl Iterator<Item = &'a Query>) -> (usize, usize) {
    let mut counts = (0, 0);
    for query in queries {
        match index.screen(query).first().map(|c| c.decision) {
            Some(Decision::Review) => counts.0 += 1,
            Some(Decision::Match) => counts.1 += 1,
            _ => {}
        }
    }
    counts
}

/// How well names written in one script find their records.
#[derive(Debug, Default)]
pub struct ScriptReport {
    pub script: &'static str,
    pub queries: usize,
    /// Its own record came first and was flagged.
    pub found: usize,
    pub misses: Vec<String>,
}

impl ScriptReport {
    pub fn recall(&self) -> f64 {
        self.found as f64 / self.queries.max(1) as f64
    }
}

/// Per-script recall on a list that gives names in their original scripts (the UN's): each such
/// name is screened, alone, against an index of the list's other names with every
/// original-script name left out, and counts as found when its own record comes first.
pub fn script_recall(mut entries: Vec<Entry>) -> Vec<ScriptReport> {
    use super::un::ORIGINAL_SCRIPT;
    let mut probes: Vec<(i64, String)> = Vec::new();
    for entry in &mut entries {
        let (scripted, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut entry.alt_names)
            .into_iter()
            .partition(|alt| alt.kind == ORIGINAL_SCRIPT || script_of(&alt.name) != "Latin");
        entry.alt_names = kept;
        probes.extend(scripted.into_iter().map(|alt| (entry.id, alt.name)));
    }
    let listed: std::collections::HashMap<i64, String> = entries.iter().map(|e| (e.id, e.name.clone())).collect();
    let index = SanctionsIndex::build(entries, Default::default());
    let mut reports: Vec<ScriptReport> = Vec::new();
    for (id, name) in probes {
        let script = script_of(&name);
        if script == "Latin" {
            continue;
        }
        let found = index.screen(&Query { name: name.clone(), ..Query::default() });
        let at = match reports.iter().position(|r| r.script == script) {
            Some(at) => at,
            None => {
                reports.push(ScriptReport { script, ..ScriptReport::default() });
                reports.len() - 1
            }
        };
        let report = &mut reports[at];
        report.queries += 1;
        let listed = listed.get(&id).map_or("", String::as_str);
        match found.first() {
            Some(top) if top.entity_id == id => report.found += 1,
            Some(top) => report.misses.push(format!(
                "{id} {name:?} (listed as {listed:?}): ranked {} {:?} ({}) first",
                top.entity_id, top.name, top.score
            )),
            None => report.misses.push(format!("{id} {name:?} (listed as {listed:?}): nothing found")),
        }
    }
    reports.sort_by_key(|r| r.script);
    reports
}

/// A mixed query load for the benchmark: listed names with their variants and common names.
pub fn bench_queries(index: &SanctionsIndex) -> Vec<Query> {
    let mut queries: Vec<Query> = listed_probes(index, 7).into_iter().map(|p| p.query).collect();
    queries.extend(common_probes(index, queries.len()));
    queries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sanctions::parse_list;
    use crate::sanctions::test_files;

    /// The quality gate: recall on listed names and their variants, false positives on common
    /// names, over the full 2024-05 snapshot. `cargo test evaluation -- --nocapture` prints it all.
    #[test]
    fn evaluation_on_the_full_snapshot() {
        let index = SanctionsIndex::build(parse_list(&test_files("data/ofac")).unwrap().entries, Default::default());
        let report = evaluate(&index, 10, 2_000);
        for miss in report.misses.iter().take(40) {
            println!("miss: {miss}");
        }
        for fp in report.false_positives.iter().take(40) {
            println!("false positive: {fp}");
        }
        println!(
            "listed: {} queries, top-1 {:.2} % ({} behind an exact namesake), flagged {} | common: {} queries, review {:.2} %, match {}",
            report.listed_queries,
            report.recall() * 100.0,
            report.listed_namesake,
            report.listed_flagged,
            report.common_queries,
            report.review_rate() * 100.0,
            report.common_match
        );
        assert!(report.listed_queries > 5_000, "the set must be large enough to mean something");
        assert!(report.recall() >= 0.995, "recall {:.4}", report.recall());
        assert_eq!(report.common_match, 0, "a common name must never be a match");
        assert!(report.review_rate() <= 0.02, "review rate {:.4}", report.review_rate());
    }

    /// The bound that skips names before scoring them changes no answer: every benchmark query
    /// (listed names, their variants, common names with dates of birth and countries, and the
    /// same without them) gives the same candidates with and without it.
    #[test]
    fn skipping_names_by_their_bound_changes_no_answer() {
        let index = SanctionsIndex::build(parse_list(&test_files("data/ofac")).unwrap().entries, Default::default());
        let mut queries: Vec<Query> = bench_queries(&index).into_iter().step_by(4).collect();
        let bare: Vec<Query> = queries.iter().map(|q| Query { name: q.name.clone(), ..Query::default() }).collect();
        queries.extend(bare);
        for name in [
            "قاسم سليماني",
            "اسماعیل قاآنی",
            "حماس",
            "محمد علي",
            "عبد الله",
            "최룡해",
            "马晓红",
            "Мохаммед Али",
            "جلال الدين حقاني",
            "شمس الدين",
            "محمد جان",
            "فضل الرحمن",
            "صلاح الدين محمد",
            "احمد جان آخوند زاده",
        ] {
            queries.push(Query { name: name.into(), ..Query::default() });
        }
        let mut flagged = 0;
        for query in &queries {
            let (pruned, full) = (index.screen(query), index.screen_unpruned(query));
            let digest = |found: &[crate::sanctions::Candidate]| -> Vec<(i64, f64, f64, Decision)> {
                found.iter().map(|c| (c.entity_id, c.score, c.name_score, c.decision)).collect()
            };
            assert_eq!(digest(&pruned), digest(&full), "{query:?}");
            flagged += usize::from(!full.is_empty());
        }
        assert!(
            flagged > queries.len() / 4,
            "{flagged} of {} flagged: the comparison must cover answers",
            queries.len()
        );
    }

    /// Common names in Arabic script, screened as onboarding screens a person: never a match, at
    /// most 2 % sent to review (the same names in Latin letters are printed beside them).
    #[test]
    fn common_arabic_names_against_the_full_snapshot() {
        let index = SanctionsIndex::build(parse_list(&test_files("data/ofac")).unwrap().entries, Default::default());
        let probes = arabic_common_probes(2_000);
        let arabic = flag_counts(&index, probes.iter().map(|p| &p.0));
        let latin = flag_counts(&index, probes.iter().map(|p| &p.1));
        println!("common Arabic names, 2,000: in Arabic script {arabic:?} (review, match), in Latin letters {latin:?}");
        for (query, _) in probes.iter().filter(|p| !index.screen(&p.0).is_empty()).take(20) {
            let top = &index.screen(query)[0];
            println!(
                "flagged: {:?} -> {} {:?} ({})",
                query.name,
                top.entity_id,
                top.matched_name,
                top.reasons.join("; ")
            );
        }
        // The same gate as for common names in Latin letters (`evaluation_on_the_full_snapshot`).
        assert_eq!(arabic.1, 0, "a common name must never be a match");
        assert!(arabic.0 <= probes.len() / 50, "{} of {} sent to review", arabic.0, probes.len());
    }

    /// The UN list's names in their original scripts, screened against its Latin names alone.
    #[test]
    fn per_script_recall_on_the_un_list() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/un/consolidated.xml");
        let list = crate::sanctions::un::parse_un(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(list.entries.len(), 1003);
        let reports = script_recall(list.entries);
        for report in &reports {
            for miss in report.misses.iter().take(30) {
                println!("{} miss: {miss}", report.script);
            }
            println!("{}: {} of {} ({:.1} %)", report.script, report.found, report.queries, report.recall() * 100.0);
        }
        // A ratchet at what is reached, below the 95 % goal (BENCHMARKS.md says what is missing):
        // a change that loses names in a script fails here.
        let recall = |script: &str| reports.iter().find(|r| r.script == script).map_or(0.0, ScriptReport::recall);
        assert!(reports.iter().find(|r| r.script == "Arabic").is_some_and(|r| r.queries > 350));
        assert!(recall("Arabic") >= 0.74, "Arabic recall {:.3}", recall("Arabic"));
        assert!(recall("Cyrillic") >= 0.80, "Cyrillic recall {:.3}", recall("Cyrillic"));
    }

    /// Korean, Chinese, Arabic and Persian names in their own scripts reach their entries first.
    #[test]
    fn names_in_their_own_scripts_are_flagged() {
        let index = SanctionsIndex::build(parse_list(&test_files("data/ofac")).unwrap().entries, Default::default());
        for (name, entity) in
            [("최룡해", 23213), ("리병철", 23215), ("马晓红", 20565), ("周建书", 20566), ("王国英", 16819)]
        {
            let query = crate::sanctions::Query { name: name.into(), date_of_birth: None, country: None, kind: None };
            let found = index.screen(&query);
            let top = found.first().unwrap_or_else(|| panic!("{name}: nothing found"));
            assert_eq!(top.entity_id, entity, "{name}: {found:?}");
            assert_ne!(top.decision, crate::sanctions::Decision::Clear, "{name}");
        }
    }
}
