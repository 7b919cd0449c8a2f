//! The in-memory screening index: every listed name as tokens, a candidate index so a query looks
//! at the few names that share a (nearly) equal token, and the scorer that decides.
//!
//! Candidate generation is a symmetric deletion neighbourhood (as in SymSpell): each token of four
//! or more letters is indexed under itself and under every string with one letter deleted, and a
//! query token is looked up the same way. Two tokens within one substitution, insertion, deletion
//! or adjacent transposition share a key, so typos still find their name without a full scan.

use rustc_hash::{FxHashMap, FxHashSet};
use time::Date;

use super::normalize::{tokens, tokens_apart};
use super::parse::{EntityKind, Entry, ListSource};

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
    /// The list the entry is on, and the version of it that was screened.
    pub list: ListSource,
    pub list_version: i64,
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
    /// clearance is tied to. Entries of the other lists carry the list's name in front
    /// (`un:…`): entity ids are only unique within one list, and OFAC SDN fingerprints stay as
    /// they were before there were other lists, so clearances made then still hold.
    pub fingerprint: String,
}

struct IndexedName {
    entry: u32,
    tokens: Box<[u32]>,
    /// Sum of the token lengths: the denominator of the name's coverage.
    weight: u32,
    /// The tokens written together, for names whose spacing or hyphenation varies.
    joined: Box<str>,
    /// How often each letter and digit occurs in `joined`: bounds its similarity to a query's.
    letters: Letters,
    text: Box<str>,
}

pub struct SanctionsIndex {
    /// The list and list version the entries are from (named in every candidate).
    list: ListSource,
    version: i64,
    entries: Vec<Entry>,
    names: Vec<IndexedName>,
    dictionary: Vec<Box<str>>,
    token_ids: FxHashMap<Box<str>, u32>,
    /// Deletion-neighbourhood key → dictionary tokens.
    keys: KeyIndex,
    /// Dictionary token → names that contain it.
    postings: Vec<Vec<u32>>,
    /// Deletion-neighbourhood key of a short joined name (`EP-MOB` → `epmob`) → names.
    joined_keys: KeyIndex,
    /// Consonant skeleton (`arabic::latin_skeleton`) → dictionary tokens: where Arabic-script
    /// query words find their Latin spellings.
    skeletons: FxHashMap<Box<str>, Vec<u32>>,
    /// Consonant skeletons of three or more letters and each with one letter deleted →
    /// dictionary tokens: where spellings two or more edits apart that differ by one consonant
    /// meet (`ABDELRAHMAN` / `ABDURRAHMAN`, `ABDULLA` / `ABDALLAH`).
    skeleton_keys: KeyIndex,
    policy: MatchPolicy,
}

/// Tokens shorter than this are only ever compared exactly: short tokens are where fuzzy
/// matching produces its false positives.
const FUZZY_MIN_LEN: usize = 4;
/// Skeletons shorter than this are only looked up whole: one deletion from two consonants
/// reaches too many tokens to compare.
const SKELETON_KEY_MIN_LEN: usize = 3;
/// How close an Arabic-script word of one consonant must be rendered to a token to pair with it.
const SHORT_SKELETON_FLOOR: f64 = 0.80;
/// Two tokens count as paired from this Jaro-Winkler similarity on.
const PAIR_FLOOR: f64 = 0.84;

impl SanctionsIndex {
    pub fn build(entries: Vec<Entry>, policy: MatchPolicy) -> Self {
        let mut index = SanctionsIndex {
            list: ListSource::OfacSdn,
            version: 0,
            entries: Vec::new(),
            names: Vec::new(),
            dictionary: Vec::new(),
            token_ids: FxHashMap::default(),
            keys: KeyIndex::default(),
            postings: Vec::new(),
            joined_keys: KeyIndex::default(),
            skeletons: FxHashMap::default(),
            skeleton_keys: KeyIndex::default(),
            policy,
        };
        for (at, entry) in entries.iter().enumerate() {
            let mut seen: FxHashSet<Vec<String>> = FxHashSet::default();
            let names = std::iter::once(entry.name.as_str())
                .chain(entry.alt_names.iter().map(|a| a.name.as_str()))
                .chain(entry.remarks.aliases.iter().map(String::as_str));
            for name in names {
                let toks = tokens(name);
                for toks in std::iter::once(toks).chain(tokens_apart(name)) {
                    if toks.is_empty() || !seen.insert(toks.clone()) {
                        continue;
                    }
                    index.add_name(at as u32, name, &toks);
                }
            }
        }
        for (tid, token) in index.dictionary.iter().enumerate() {
            let skeleton = super::arabic::latin_skeleton(token);
            if token.len() >= FUZZY_MIN_LEN && skeleton.len() >= SKELETON_KEY_MIN_LEN {
                for key in neighbourhood(&skeleton) {
                    index.skeleton_keys.insert(&key, tid as u32);
                }
            }
            // A particle standing alone (`AL`, `BEN` of a name indexed with its particles apart)
            // is no word of the name to meet: `علي` (`l`) must not pair with `AL`.
            if !skeleton.is_empty() && !super::normalize::is_particle(token) {
                index.skeletons.entry(skeleton.into_boxed_str()).or_default().push(tid as u32);
            }
        }
        index.entries = entries;
        index.keys.finish();
        index.joined_keys.finish();
        index.skeleton_keys.finish();
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
                        self.keys.insert(&key, id);
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
                self.joined_keys.insert(&key, name_id);
            }
        }
        let letters = letters(&joined);
        self.names.push(IndexedName {
            entry,
            tokens: ids.into(),
            weight,
            joined: joined.into(),
            letters,
            text: text.into(),
        });
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

    /// Names the list version these entries are from (OFAC SDN, version 0, unless said).
    pub fn for_list(mut self, list: ListSource, version: i64) -> Self {
        self.list = list;
        self.version = version;
        self
    }

    pub fn list(&self) -> ListSource {
        self.list
    }

    pub fn key_count(&self) -> usize {
        self.keys.distinct
    }

    /// Every entry scoring at least `review`, best first, one candidate per entry.
    ///
    /// Query tokens pair only with the dictionary tokens their keys reach (one edit apart, the
    /// same consonant skeleton, or an Arabic-script word's skeleton), so what the key hits say
    /// about a name bounds its score before it is scored: a name that cannot reach `review` even
    /// with the best corroboration its entry allows is skipped. Common words (`Mohammad`, `Ali`)
    /// put thousands of names in reach; few of them hold the query's other words.
    pub fn screen(&self, query: &Query) -> Vec<Candidate> {
        SCRATCH.with(|scratch| self.screen_readings(query, &mut scratch.borrow_mut(), true))
    }

    /// `screen` scoring every name in reach: what the bound must never change.
    #[cfg(test)]
    pub(crate) fn screen_unpruned(&self, query: &Query) -> Vec<Candidate> {
        self.screen_readings(query, &mut Scratch::default(), false)
    }

    /// Screens the name as written and, when its Arabic-script words hold a compound the list
    /// may write glued (`جلال الدين` / `JALALUDDIN`), with the compound glued too; each entry
    /// keeps its better candidate. A name without such a compound is screened once.
    fn screen_readings(&self, query: &Query, scratch: &mut Scratch, prune: bool) -> Vec<Candidate> {
        let apart = super::arabic::split(&query.name, false);
        let words = apart.0.len();
        let mut found = self.screen_with(query, apart, scratch, prune);
        if words == 0 {
            return found;
        }
        let glued = super::arabic::split(&query.name, true);
        if glued.0.len() == words {
            return found;
        }
        found.extend(self.screen_with(query, glued, scratch, prune));
        found.sort_by(|a, b| {
            b.decision.cmp(&a.decision).then(b.score.total_cmp(&a.score)).then(a.entity_id.cmp(&b.entity_id))
        });
        let mut seen = FxHashSet::default();
        found.retain(|c| seen.insert(c.entity_id));
        found
    }

    fn screen_with(
        &self,
        query: &Query,
        (arabic, rest): (Vec<super::arabic::ArabicWord>, String),
        scratch: &mut Scratch,
        prune: bool,
    ) -> Vec<Candidate> {
        let mut query_tokens = tokens(&rest);
        let latin = query_tokens.len();
        query_tokens.extend(arabic.iter().map(|w| w.rendered.clone()));
        // Pairs are tracked in 64-bit masks, so a query longer than that keeps its first 64 words.
        query_tokens.truncate(64);
        if query_tokens.is_empty() {
            return Vec::new();
        }
        // Query token × dictionary token similarities: every pair the scorer may use.
        let mut similar: Vec<FxHashMap<u32, f64>> = vec![FxHashMap::default(); query_tokens.len()];
        // Arabic-script words pair with the list's tokens of the same consonant skeleton, the
        // closer to the word's vowelled rendering the better (0.90 to 0.99).
        for (offset, word) in arabic.iter().enumerate().take(64usize.saturating_sub(latin)) {
            for skeleton in word.skeletons() {
                let Some(tids) = self.skeletons.get(skeleton) else { continue };
                let rendered = if skeleton.len() == 1 { word.short_rendering() } else { word.rendered.as_str().into() };
                for &tid in tids {
                    let closeness = strsim::jaro_winkler(&rendered, &self.dictionary[tid as usize]);
                    // One consonant (`علي` → `l`, or `طه` → `t` without its `ه`) is shared by
                    // hundreds of tokens: only those close to the word's rendering (`ali`, `aly`;
                    // not `lee`, `lola`) pair with it.
                    if skeleton.len() == 1 && closeness < SHORT_SKELETON_FLOOR {
                        continue;
                    }
                    let sim = 0.90 + 0.09 * closeness;
                    let slot = similar[latin + offset].entry(tid).or_insert(sim);
                    *slot = slot.max(sim);
                }
            }
        }
        for (qi, token) in query_tokens.iter().enumerate().take(latin) {
            let mut consider = |tid: u32| {
                if let std::collections::hash_map::Entry::Vacant(slot) = similar[qi].entry(tid) {
                    let sim = token_similarity(token, &self.dictionary[tid as usize]);
                    if sim >= PAIR_FLOOR {
                        slot.insert(sim);
                    }
                }
            };
            for key in neighbourhood(token) {
                self.keys.get(&key).for_each(&mut consider);
            }
            // Spellings apart by their vowels (`Usama`/`Osama`, `Mohammed`/`Muhammad`) share a
            // consonant skeleton even when they are more than one edit apart.
            // The skeleton keys hold each long skeleton itself too, and the tokens shorter than
            // four letters they leave out never pair with this one, so one lookup serves.
            if token.len() >= FUZZY_MIN_LEN {
                let skeleton = super::arabic::latin_skeleton(token);
                if skeleton.len() >= SKELETON_KEY_MIN_LEN {
                    for key in neighbourhood(&skeleton) {
                        self.skeleton_keys.get(&key).for_each(&mut consider);
                    }
                } else {
                    self.skeletons
                        .get(skeleton.as_str())
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .for_each(|&t| consider(t));
                }
            }
        }

        scratch.reset(self.names.len());
        for (qi, pairs) in similar.iter().enumerate() {
            let q_len = query_tokens[qi].len() as f32;
            for (&tid, &sim) in pairs {
                let t_len = self.dictionary[tid as usize].len() as u32;
                for &name_id in &self.postings[tid as usize] {
                    scratch.hit(name_id, qi as u16, sim as f32 * q_len, t_len);
                }
            }
        }
        let query_joined = query_tokens.concat();
        if query_joined.len() <= JOINED_KEY_MAX_LEN {
            for key in neighbourhood(&query_joined) {
                for name_id in self.joined_keys.get(&key) {
                    scratch.joined(name_id);
                }
            }
        }
        let joined_letters = letters(&query_joined);

        let q_weight: usize = query_tokens.iter().map(String::len).sum();
        let review = self.policy.review_threshold;
        let max_bonus = max_adjustment(query);
        let mut best: FxHashMap<u32, (f64, u32)> = FxHashMap::default();
        let Scratch { bounds, touched, pairs } = scratch;
        for &name_id in touched.iter() {
            let bound = bounds[name_id as usize].finish();
            let name = &self.names[name_id as usize];
            let entry = &self.entries[name.entry as usize];
            if query.kind.is_some_and(|k| k != entry.kind) {
                continue;
            }
            let q_bound = f64::from(bound.q_cover) / q_weight as f64;
            let n_bound = (f64::from(bound.n_len) / f64::from(name.weight)).min(1.0);
            let token_bound = q_bound * (0.8 + 0.2 * n_bound);
            let joined_bound = if bound.joined {
                1.0
            } else {
                joined_bound(&query_joined, &joined_letters, &name.joined, &name.letters)
            };
            let upper = token_bound.max(joined_bound);
            // A margin for the bounds' single precision: a name at the threshold is always scored.
            let upper = upper + 1e-6;
            if prune && upper + max_bonus < review {
                continue;
            }
            let (dob, country) = corroboration(query, entry);
            if prune && upper + adjustment(dob, country) < review {
                continue;
            }
            let mut score = self.name_score(&query_tokens, &similar, name, pairs);
            if score < review && (!prune || joined_bound > 0.0) {
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
    fn name_score(
        &self,
        query: &[String],
        similar: &[FxHashMap<u32, f64>],
        name: &IndexedName,
        pairs: &mut Vec<(f64, u8, u8)>,
    ) -> f64 {
        pairs.clear();
        for (qi, pairs_of) in similar.iter().enumerate() {
            for (ni, tid) in name.tokens.iter().enumerate().take(64) {
                if let Some(&sim) = pairs_of.get(tid) {
                    pairs.push((sim, qi as u8, ni as u8));
                }
            }
        }
        pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let (mut q_used, mut n_used) = (0u64, 0u64);
        let (mut q_cover, mut n_cover) = (0.0, 0.0);
        for &(sim, qi, ni) in pairs.iter() {
            if q_used & (1 << qi) != 0 || n_used & (1 << ni) != 0 {
                continue;
            }
            q_used |= 1 << qi;
            n_used |= 1 << ni;
            q_cover += sim * query[qi as usize].len() as f64;
            n_cover += sim * self.dictionary[name.tokens[ni as usize] as usize].len() as f64;
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
        let (dob, country) = corroboration(query, entry);
        let score = name_score + adjustment(dob, country);
        match dob {
            Corroboration::Equal => reasons.push("DOB equal".into()),
            Corroboration::Consistent => reasons.push("DOB within the listed range".into()),
            Corroboration::Conflict => reasons.push("DOB differs".into()),
            Corroboration::Unknown => {}
        }
        let code = query.country.as_deref().unwrap_or_default().to_ascii_uppercase();
        match country {
            Corroboration::Equal => reasons.push(format!("country {code} listed")),
            Corroboration::Conflict => {
                reasons.push(format!("country {code} not listed ({})", entry.countries.join(", ")))
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
        let fingerprint = match self.list {
            ListSource::OfacSdn => entry.fingerprint(),
            other => format!("{other}:{}", entry.fingerprint()),
        };
        Some(Candidate {
            list: self.list,
            list_version: self.version,
            entity_id: entry.id,
            name: entry.name.clone(),
            matched_name: name.text.to_string(),
            kind: entry.kind,
            programs: entry.programs.clone(),
            score: round(score),
            name_score: round(name_score),
            decision,
            reasons,
            fingerprint,
        })
    }
}

/// How the query's date of birth and country bear on an entry.
fn corroboration(query: &Query, entry: &Entry) -> (Corroboration, Corroboration) {
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
    let country = match query.country.as_deref() {
        None => Corroboration::Unknown,
        Some(_) if entry.countries.is_empty() => Corroboration::Unknown,
        Some(code) if entry.countries.iter().any(|c| c.eq_ignore_ascii_case(code)) => Corroboration::Equal,
        Some(_) => Corroboration::Conflict,
    };
    (dob, country)
}

/// What the date of birth and the country add to (or take from) the name's score.
fn adjustment(dob: Corroboration, country: Corroboration) -> f64 {
    let dob = match dob {
        Corroboration::Equal => 0.08,
        Corroboration::Consistent => 0.03,
        Corroboration::Conflict => -0.15,
        Corroboration::Unknown => 0.0,
    };
    let country = match country {
        Corroboration::Equal => 0.03,
        Corroboration::Conflict => -0.05,
        _ => 0.0,
    };
    dob + country
}

/// The most the date of birth and the country can add to a query's name score against any entry.
fn max_adjustment(query: &Query) -> f64 {
    let dob = if query.date_of_birth.is_some() { 0.08 } else { 0.0 };
    dob + if query.country.is_some() { 0.03 } else { 0.0 }
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
    if joined_length(a, b).is_none() {
        return 0.0;
    }
    let sim = strsim::normalized_levenshtein(a, b);
    if sim >= JOINED_FLOOR { sim } else { 0.0 }
}

/// Where `joined_similarity` starts counting: one edit in eight letters.
const JOINED_FLOOR: f64 = 0.88;

/// The longer length of two joined names, unless their lengths alone keep them below the floor.
fn joined_length(a: &str, b: &str) -> Option<usize> {
    let (short, long) = if a.len() <= b.len() { (a.len(), b.len()) } else { (b.len(), a.len()) };
    (long > 0 && short as f64 >= long as f64 * JOINED_FLOOR).then_some(long)
}

/// Deletion-neighbourhood keys and the ids under them, as (hash of the key, id) pairs in order: a
/// hash map of strings to vectors took ~100 bytes a key (the map's slot, the string's and the
/// vector's allocations), these take 16 a pair. Keys whose hashes collide share their ids, which
/// is harmless: every id found is compared with the query before it counts.
#[derive(Default)]
struct KeyIndex {
    pairs: Vec<(u64, u32)>,
    /// Distinct keys, for the benchmark's report.
    distinct: usize,
}

impl KeyIndex {
    fn hash(key: &str) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(key)
    }

    fn insert(&mut self, key: &str, id: u32) {
        self.pairs.push((Self::hash(key), id));
    }

    fn finish(&mut self) {
        self.pairs.sort_unstable();
        self.pairs.dedup();
        self.pairs.shrink_to_fit();
        self.distinct = self.pairs.chunk_by(|a, b| a.0 == b.0).count();
    }

    fn get(&self, key: &str) -> impl Iterator<Item = u32> + '_ {
        let hash = Self::hash(key);
        let start = self.pairs.partition_point(|&(h, _)| h < hash);
        self.pairs[start..].iter().take_while(move |&&(h, _)| h == hash).map(|&(_, id)| id)
    }
}

/// Counts of `a`–`z` and `0`–`9` (what tokens are made of), saturating.
type Letters = [u8; 36];

fn letters(joined: &str) -> Letters {
    let mut counts = [0u8; 36];
    for b in joined.bytes() {
        let slot = match b {
            b'a'..=b'z' => b - b'a',
            b'0'..=b'9' => 26 + b - b'0',
            _ => continue,
        };
        counts[slot as usize] = counts[slot as usize].saturating_add(1);
    }
    counts
}

/// An upper bound of `joined_similarity` without computing it: an edit script keeps at most the
/// letters both strings have, so the distance is at least the longer length less those.
fn joined_bound(a: &str, a_letters: &Letters, b: &str, b_letters: &Letters) -> f64 {
    let Some(long) = joined_length(a, b) else { return 0.0 };
    let common: u32 = a_letters.iter().zip(b_letters).map(|(&x, &y)| u32::from(x.min(y))).sum();
    let bound = f64::from(common) / long as f64;
    if bound >= JOINED_FLOOR { bound } else { 0.0 }
}

thread_local! {
    /// Working memory of the queries run on this thread.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// A query's working memory, kept between queries so that none allocates per candidate name.
#[derive(Default)]
struct Scratch {
    /// Per name id; only the `touched` ones hold anything.
    bounds: Vec<NameBound>,
    touched: Vec<u32>,
    /// The scorer's (similarity, query token, name token) pairs.
    pairs: Vec<(f64, u8, u8)>,
}

/// What the key hits say about one name while a query gathers them, query token by query token.
#[derive(Debug, Clone, Copy, Default)]
struct NameBound {
    /// The query token being gathered, plus one.
    at: u16,
    /// Its best similarity × its length, and the longest of the name's tokens it reached.
    cover: f32,
    len: u32,
    /// The same, summed over the query tokens gathered before.
    q_cover: f32,
    n_len: u32,
    /// Reached through the joined spelling.
    joined: bool,
    touched: bool,
}

/// A name's bound once every query token is gathered.
struct Bound {
    q_cover: f32,
    n_len: u32,
    joined: bool,
}

impl NameBound {
    fn finish(&self) -> Bound {
        Bound { q_cover: self.q_cover + self.cover, n_len: self.n_len + self.len, joined: self.joined }
    }
}

impl Scratch {
    fn reset(&mut self, names: usize) {
        for name in self.touched.drain(..) {
            self.bounds[name as usize] = NameBound::default();
        }
        if self.bounds.len() < names {
            self.bounds.resize(names, NameBound::default());
        }
    }

    fn touch(&mut self, name: u32) -> &mut NameBound {
        let bound = &mut self.bounds[name as usize];
        if !bound.touched {
            bound.touched = true;
            self.touched.push(name);
        }
        bound
    }

    /// Query token `qi` reaches a token of `name` of length `len` with similarity × its own
    /// length `cover`. Tokens arrive in order, so a name holds only the current one's best.
    fn hit(&mut self, name: u32, qi: u16, cover: f32, len: u32) {
        let bound = self.touch(name);
        if bound.at != qi + 1 {
            bound.q_cover += bound.cover;
            bound.n_len += bound.len;
            (bound.at, bound.cover, bound.len) = (qi + 1, cover, len);
        } else {
            bound.cover = bound.cover.max(cover);
            bound.len = bound.len.max(len);
        }
    }

    fn joined(&mut self, name: u32) {
        self.touch(name).joined = true;
    }
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
    use crate::sanctions::parse_list;
    use crate::sanctions::{ListFiles, test_files};
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
        // Spellings apart by their vowels meet through their consonant skeleton (`Artyom` is two
        // edits from `Artem`, out of reach of the one-edit keys).
        let variant = top(q("Artyom Mikhaylovich Lifshitz")).unwrap();
        assert_eq!(variant.0, 29702);
        assert!(variant.1 >= 0.86, "{variant:?}");
        // An alias from the Remarks field is a name too.
        assert_eq!(top(q("HESA")).map(|c| c.0), Some(11195));
        // One shared surname is not enough.
        assert_eq!(top(q("Maria Moreno")), None);
        assert_eq!(top(q("supermarket")), None);
    }

    /// Spellings two edits apart that differ by a consonant meet through the skeleton keys, and a
    /// particle left out still meets its name.
    #[test]
    fn spelling_variants_more_than_one_edit_apart() {
        let sdn = "1,\"ABDURRAHMAN, Ahmed Hassan\",\"individual\",\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n\
                   2,\"KUZNETSOV, Aleksandr Ivanovich\",\"individual\",\"RUSSIA-EO14024\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n\
                   3,\"BEN ALI, Mohamed\",\"individual\",\"SDGT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n";
        let files = ListFiles::of(ListSource::OfacSdn, [sdn.as_bytes().to_vec()]);
        let index = SanctionsIndex::build(parse_list(&files).unwrap().entries, MatchPolicy::default());
        // A particle left out meets the name indexed with its particles apart.
        for (name, entity) in
            [("Abdelrahman Ahmed Hassan", 1), ("Alexander Ivanovich Kuznetsov", 2), ("Mohamed Ali", 3)]
        {
            let found = index.screen(&q(name));
            assert_eq!(found.first().map(|c| c.entity_id), Some(entity), "{name}: {found:?}");
        }
    }

    #[test]
    fn neighbourhoods() {
        assert_eq!(neighbourhood("al"), ["al"]);
        assert_eq!(neighbourhood("abba"), ["aba", "abb", "abba", "bba"]);
    }
}
