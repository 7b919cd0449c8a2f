//! The in-memory screening index: every listed name as tokens, a candidate index so a query looks
//! at the few names that share a (nearly) equal token, and the scorer that decides.
//!
//! Candidate generation is a symmetric deletion neighbourhood (as in SymSpell): each token of four
//! or more letters is indexed under itself and under every string with one letter deleted, and a
//! query token is looked up the same way. Two tokens within one substitution, insertion, deletion
//! or adjacent transposition share a key, so typos still find their name without a full scan.

use rustc_hash::{FxHashMap, FxHashSet};
use time::Date;

use super::normalize::tokens;
use super::parse::{EntityKind, Entry};

/// Thresholds and weights; `Default` is what the evaluation suite is tuned on.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchPolicy {
    /// Final score from which a candidate is a `match` (when corroborated, see `decide`).
    pub match_threshold: f64,
    /// Final score from which a candidate goes to a human (`review`).
    pub review_threshold: f64,
    /// A `match` also needs the name alone to score at least this.
    pub match_name_floor: f64,
}

impl Default for MatchPolicy {
    fn default() -> Self {
        Self { match_threshold: 0.95, review_threshold: 0.86, match_name_floor: 0.88 }
    }
}

crate::domain::wire_enum! {
    /// What a screening concluded, from nothing to report to a corroborated match.
    #[derive(PartialOrd, Ord, serde::Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Decision { Clear = "clear", Review = "review", Match = "match" }
}

/// What a screening is asked about.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The name parts in order (first, middle, last, second last), or one full name.
    pub name: String,
    pub date_of_birth: Option<Date>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    pub kind: Option<EntityKind>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub entity_id: i64,
    /// The list's primary name of the entry.
    pub name: String,
    /// The name (primary or alias) that scored best.
    pub matched_name: String,
    #[serde(rename = "type")]
    pub kind: EntityKind,
    pub programs: Vec<String>,
    pub score: f64,
    pub name_score: f64,
    pub decision: Decision,
    pub reasons: Vec<String>,
    /// `Entry::fingerprint` of the entry as this list version describes it: what a compliance
    /// clearance is tied to.
    pub fingerprint: String,
}

struct IndexedName {
    entry: u32,
    tokens: Box<[u32]>,
    /// Sum of the token lengths: the denominator of the name's coverage.
    weight: u32,
    /// The tokens written together, for names whose spacing or hyphenation varies.
    joined: Box<str>,
    text: Box<str>,
}

pub struct SanctionsIndex {
    entries: Vec<Entry>,
    names: Vec<IndexedName>,
    dictionary: Vec<Box<str>>,
    token_ids: FxHashMap<Box<str>, u32>,
    /// Deletion-neighbourhood key → dictionary tokens.
    keys: FxHashMap<Box<str>, Vec<u32>>,
    /// Dictionary token → names that contain it.
    postings: Vec<Vec<u32>>,
    /// Deletion-neighbourhood key of a short joined name (`EP-MOB` → `epmob`) → names.
    joined_keys: FxHashMap<Box<str>, Vec<u32>>,
    /// Consonant skeleton (`arabic::latin_skeleton`) → dictionary tokens: where Arabic-script
    /// query words find their Latin spellings.
    skeletons: FxHashMap<Box<str>, Vec<u32>>,
    policy: MatchPolicy,
}

/// Tokens shorter than this are only ever compared exactly: short tokens are where fuzzy
/// matching produces its false positives.
const FUZZY_MIN_LEN: usize = 4;
/// Two tokens count as paired from this Jaro-Winkler similarity on.
const PAIR_FLOOR: f64 = 0.84;

impl SanctionsIndex {
    pub fn build(entries: Vec<Entry>, policy: MatchPolicy) -> Self {
        let mut index = SanctionsIndex {
            entries: Vec::new(),
            names: Vec::new(),
            dictionary: Vec::new(),
            token_ids: FxHashMap::default(),
            keys: FxHashMap::default(),
            postings: Vec::new(),
            joined_keys: FxHashMap::default(),
            skeletons: FxHashMap::default(),
            policy,
        };
        for (at, entry) in entries.iter().enumerate() {
            let mut seen: FxHashSet<Vec<String>> = FxHashSet::default();
            let names = std::iter::once(entry.name.as_str())
                .chain(entry.alt_names.iter().map(|a| a.name.as_str()))
                .chain(entry.remarks.aliases.iter().map(String::as_str));
            for name in names {
                let toks = tokens(name);
                if toks.is_empty() || !seen.insert(toks.clone()) {
                    continue;
                }
                index.add_name(at as u32, name, &toks);
            }
        }
        for (tid, token) in index.dictionary.iter().enumerate() {
            let skeleton = super::arabic::latin_skeleton(token);
            if skeleton.len() >= 2 {
                index.skeletons.entry(skeleton.into_boxed_str()).or_default().push(tid as u32);
            }
        }
        index.entries = entries;
        index.keys.shrink_to_fit();
        index
    }

    fn add_name(&mut self, entry: u32, text: &str, toks: &[String]) {
        let name_id = self.names.len() as u32;
        let mut ids = Vec::with_capacity(toks.len());
        for token in toks {
            let id = match self.token_ids.get(token.as_str()) {
                Some(&id) => id,
                None => {
                    let id = self.dictionary.len() as u32;
                    self.dictionary.push(token.as_str().into());
                    self.token_ids.insert(token.as_str().into(), id);
                    self.postings.push(Vec::new());
                    for key in neighbourhood(token) {
                        self.keys.entry(key.into_boxed_str()).or_default().push(id);
                    }
                    id
                }
            };
            let postings = &mut self.postings[id as usize];
            if postings.last() != Some(&name_id) {
                postings.push(name_id);
            }
            ids.push(id);
        }
        let weight = toks.iter().map(|t| t.len() as u32).sum();
        let joined = toks.concat();
        if toks.len() > 1 && joined.len() <= JOINED_KEY_MAX_LEN {
            for key in neighbourhood(&joined) {
                let names = self.joined_keys.entry(key.into_boxed_str()).or_default();
                if names.last() != Some(&name_id) {
                    names.push(name_id);
                }
            }
        }
        self.names.push(IndexedName { entry, tokens: ids.into(), weight, joined: joined.into(), text: text.into() });
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Every entry scoring at least `review`, best first, one candidate per entry.
    pub fn screen(&self, query: &Query) -> Vec<Candidate> {
        let (arabic, rest) = super::arabic::split(&query.name);
        let mut query_tokens = tokens(&rest);
        let latin = query_tokens.len();
        query_tokens.extend(arabic.iter().map(|w| w.rendered.clone()));
        if query_tokens.is_empty() {
            return Vec::new();
        }
        // Query token × dictionary token similarities, computed once per pair.
        let mut similar: Vec<FxHashMap<u32, f64>> = vec![FxHashMap::default(); query_tokens.len()];
        let mut candidates: FxHashSet<u32> = FxHashSet::default();
        // Arabic-script words pair with the list's tokens of the same consonant skeleton, the
        // closer to the word's vowelled rendering the better (0.90 to 0.99).
        for (offset, word) in arabic.iter().enumerate() {
            for &tid in self.skeletons.get(word.skeleton.as_str()).map(Vec::as_slice).unwrap_or_default() {
                let closeness = strsim::jaro_winkler(&word.rendered, &self.dictionary[tid as usize]);
                similar[latin + offset].insert(tid, 0.90 + 0.09 * closeness);
                candidates.extend(self.postings[tid as usize].iter().copied());
            }
        }
        for (qi, token) in query_tokens.iter().enumerate() {
            let mut seen: FxHashSet<u32> = FxHashSet::default();
            for key in neighbourhood(token) {
                for &tid in self.keys.get(key.as_str()).map(Vec::as_slice).unwrap_or_default() {
                    if !seen.insert(tid) {
                        continue;
                    }
                    let sim = token_similarity(token, &self.dictionary[tid as usize]);
                    if sim >= PAIR_FLOOR {
                        similar[qi].insert(tid, sim);
                        candidates.extend(self.postings[tid as usize].iter().copied());
                    }
                }
            }
        }

        let query_joined = query_tokens.concat();
        if query_joined.len() <= JOINED_KEY_MAX_LEN {
            for key in neighbourhood(&query_joined) {
                candidates.extend(self.joined_keys.get(key.as_str()).map(Vec::as_slice).unwrap_or_default());
            }
        }

        let mut best: FxHashMap<u32, (f64, u32)> = FxHashMap::default();
        for name_id in candidates {
            let name = &self.names[name_id as usize];
            let entry = &self.entries[name.entry as usize];
            if query.kind.is_some_and(|k| k != entry.kind) {
                continue;
            }
            let mut score = self.name_score(&query_tokens, &mut similar, name);
            if score < self.policy.review_threshold {
                score = score.max(joined_similarity(&query_joined, &name.joined));
            }
            let slot = best.entry(name.entry).or_insert((0.0, name_id));
            if score > slot.0 {
                *slot = (score, name_id);
            }
        }

        let mut out: Vec<Candidate> = best
            .into_iter()
            .filter_map(|(entry, (name_score, name_id))| self.judge(query, entry, name_id, name_score))
            .collect();
        // A corroborated match outranks an uncorroborated review whatever their name scores.
        out.sort_by(|a, b| {
            b.decision.cmp(&a.decision).then(b.score.total_cmp(&a.score)).then(a.entity_id.cmp(&b.entity_id))
        });
        out
    }

    /// Token-paired similarity: pair each query token with its most similar unused name token
    /// (best pairs first), then weigh how much of the query and how much of the name is covered.
    /// The query's coverage counts most: people leave out middle names and second surnames far
    /// more often than they add names the list does not have.
    fn name_score(&self, query: &[String], similar: &mut [FxHashMap<u32, f64>], name: &IndexedName) -> f64 {
        let mut pairs: Vec<(f64, usize, usize)> = Vec::with_capacity(query.len() * name.tokens.len());
        for (qi, q) in query.iter().enumerate() {
            for (ni, &tid) in name.tokens.iter().enumerate() {
                let sim =
                    *similar[qi].entry(tid).or_insert_with(|| token_similarity(q, &self.dictionary[tid as usize]));
                if sim >= PAIR_FLOOR {
                    pairs.push((sim, qi, ni));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut q_used, mut n_used) = (0u64, 0u64);
        let (mut q_cover, mut n_cover) = (0.0, 0.0);
        for (sim, qi, ni) in pairs {
            if qi >= 64 || ni >= 64 || q_used & (1 << qi) != 0 || n_used & (1 << ni) != 0 {
                continue;
            }
            q_used |= 1 << qi;
            n_used |= 1 << ni;
            q_cover += sim * query[qi].len() as f64;
            n_cover += sim * self.dictionary[name.tokens[ni] as usize].len() as f64;
        }
        let q_weight: usize = query.iter().map(String::len).sum();
        let q_cover = q_cover / q_weight as f64;
        let n_cover = n_cover / name.weight as f64;
        q_cover * (0.8 + 0.2 * n_cover)
    }

    fn judge(&self, query: &Query, entry_at: u32, name_id: u32, name_score: f64) -> Option<Candidate> {
        let entry = &self.entries[entry_at as usize];
        let name = &self.names[name_id as usize];
        let mut reasons = vec![format!("name {name_score:.2} vs {:?}", &*name.text)];
        let mut score = name_score;

        let dob = match query.date_of_birth {
            None => Corroboration::Unknown,
            Some(_) if entry.remarks.dobs.is_empty() => Corroboration::Unknown,
            Some(date) => {
                if entry.remarks.dobs.iter().any(|d| d.is_exact() && d.contains(date)) {
                    Corroboration::Equal
                } else if entry.remarks.dobs.iter().any(|d| d.contains(date)) {
                    Corroboration::Consistent
                } else {
                    Corroboration::Conflict
                }
            }
        };
        match dob {
            Corroboration::Equal => {
                score += 0.08;
                reasons.push("DOB equal".into());
            }
            Corroboration::Consistent => {
                score += 0.03;
                reasons.push("DOB within the listed range".into());
            }
            Corroboration::Conflict => {
                score -= 0.15;
                reasons.push("DOB differs".into());
            }
            Corroboration::Unknown => {}
        }
        let country = match query.country.as_deref() {
            None => Corroboration::Unknown,
            Some(_) if entry.countries.is_empty() => Corroboration::Unknown,
            Some(code) if entry.countries.iter().any(|c| c.eq_ignore_ascii_case(code)) => Corroboration::Equal,
            Some(_) => Corroboration::Conflict,
        };
        let code = query.country.as_deref().unwrap_or_default().to_ascii_uppercase();
        match country {
            Corroboration::Equal => {
                score += 0.03;
                reasons.push(format!("country {code} listed"));
            }
            Corroboration::Conflict => {
                score -= 0.05;
                reasons.push(format!("country {code} not listed ({})", entry.countries.join(", ")));
            }
            _ => {}
        }
        if let Some(kind) = query.kind {
            reasons.push(format!("type {}", kind.as_str()));
        }
        let score = score.clamp(0.0, 1.0);
        let policy = &self.policy;
        let corroborated =
            matches!(dob, Corroboration::Equal | Corroboration::Consistent) || country == Corroboration::Equal;
        let decision = if score >= policy.match_threshold
            && name_score >= policy.match_name_floor
            && corroborated
            && dob != Corroboration::Conflict
        {
            Decision::Match
        } else if score >= policy.review_threshold {
            Decision::Review
        } else {
            return None;
        };
        Some(Candidate {
            entity_id: entry.id,
            name: entry.name.clone(),
            matched_name: name.text.to_string(),
            kind: entry.kind,
            programs: entry.programs.clone(),
            score: round(score),
            name_score: round(name_score),
            decision,
            reasons,
            fingerprint: entry.fingerprint(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corroboration {
    Unknown,
    Equal,
    Consistent,
    Conflict,
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Names written together up to this length are also indexed as one string: aircraft marks and
/// short codes (`EP-MOB`, `YK-TD`) whose hyphen moves, and glued particles.
const JOINED_KEY_MAX_LEN: usize = 12;

/// Similarity of two names written without spaces (1 − Levenshtein / longer length), for
/// spellings that split or join words differently (`ABDL-HALIM` / `ABDULHALIM`). Only counts
/// from 0.88 on (one edit in eight letters); skipped when the lengths alone rule that out.
fn joined_similarity(a: &str, b: &str) -> f64 {
    let (short, long) = if a.len() <= b.len() { (a.len(), b.len()) } else { (b.len(), a.len()) };
    if long == 0 || (short as f64) < long as f64 * 0.88 {
        return 0.0;
    }
    let sim = strsim::normalized_levenshtein(a, b);
    if sim >= 0.88 { sim } else { 0.0 }
}

/// Jaro-Winkler for tokens long enough to be fuzzy; exact equality for short ones.
fn token_similarity(a: &str, b: &str) -> f64 {
    if a == b {
        1.0
    } else if a.len() < FUZZY_MIN_LEN || b.len() < FUZZY_MIN_LEN {
        0.0
    } else {
        strsim::jaro_winkler(a, b)
    }
}

/// The token and, when it is long enough to be fuzzy, every string with one letter deleted.
fn neighbourhood(token: &str) -> Vec<String> {
    let mut keys = vec![token.to_owned()];
    if token.len() >= FUZZY_MIN_LEN {
        for at in 0..token.len() {
            let mut key = String::with_capacity(token.len() - 1);
            key.push_str(&token[..at]);
            key.push_str(&token[at + 1..]);
            keys.push(key);
        }
        keys.sort_unstable();
        keys.dedup();
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sanctions::parse::parse_list;
    use crate::sanctions::test_files;
    use time::macros::date;

    fn small_index() -> SanctionsIndex {
        let files = test_files("tests/fixtures/ofac-small");
        SanctionsIndex::build(parse_list(&files).unwrap().entries, MatchPolicy::default())
    }

    fn q(name: &str) -> Query {
        Query { name: name.into(), ..Query::default() }
    }

    #[test]
    fn scorer_goldens() {
        let index = small_index();
        let top =
            |query: Query| index.screen(&query).into_iter().next().map(|c| (c.entity_id, c.name_score, c.decision));
        // Exact, reordered, case and diacritics: a perfect name.
        assert_eq!(top(q("Daniel Moreno")), Some((15102, 1.0, Decision::Review)));
        assert_eq!(top(q("MORENO, Daniel")), Some((15102, 1.0, Decision::Review)));
        assert_eq!(top(q("Dániel Moreño")), Some((15102, 1.0, Decision::Review)));
        // Corroborated by the DOB: a match; contradicted by it: nothing.
        let with_dob = |dob| Query { date_of_birth: Some(dob), ..q("Daniel Moreno") };
        assert_eq!(top(with_dob(date!(1972 - 10 - 12))).map(|c| c.2), Some(Decision::Match));
        assert_eq!(top(with_dob(date!(1985 - 03 - 01))), None);
        // The wrong type never matches.
        assert_eq!(top(Query { kind: Some(EntityKind::Vessel), ..q("Daniel Moreno") }), None);
        // A typo still finds the name, with a lower score.
        let typo = top(q("Daneil Moreno")).unwrap();
        assert_eq!(typo.0, 15102);
        assert!((0.86..1.0).contains(&typo.1), "{typo:?}");
        // A middle name left out costs a little, not the match.
        let partial = top(Query { date_of_birth: Some(date!(1963 - 07 - 28)), ..q("Elvis Logan") }).unwrap();
        assert_eq!(partial.0, 10278);
        assert!(partial.1 >= 0.86, "{partial:?}");
        // An alias from the Remarks field is a name too.
        assert_eq!(top(q("HESA")).map(|c| c.0), Some(11195));
        // One shared surname is not enough.
        assert_eq!(top(q("Maria Moreno")), None);
        assert_eq!(top(q("supermarket")), None);
    }

    #[test]
    fn neighbourhoods() {
        assert_eq!(neighbourhood("al"), ["al"]);
        assert_eq!(neighbourhood("abba"), ["aba", "abb", "abba", "bba"]);
    }
}
