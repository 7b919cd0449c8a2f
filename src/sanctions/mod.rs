//! Sanctions screening: the OFAC list (parse), names to tokens (normalize), the index and scorer
//! (index), and this module, which keeps the current list version loaded, screens, records what
//! it screened, and re-screens users when a new list arrives.

mod arabic;
mod countries;
pub mod eu;
pub mod eval;
pub mod index;
pub mod normalize;
pub mod parse;
pub mod uk;
pub mod un;
mod xml;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Instant;

pub use crate::domain::sanctions_list::ListSelection;
pub use index::{Candidate, Decision, MatchPolicy, Query, SanctionsIndex};
pub use parse::{EntityKind, ListCounts, ListFiles, ListSource, ParseError, ParsedList, country_code, is_country_code};

use crate::domain::cip::Status;
use crate::domain::cip::{CipState, Transition};
pub use crate::domain::parse_date;
use crate::domain::{PartnerId, UserId, now_ms};
use crate::store::sanctions::{self as store_sanctions, ScreenablePerson};
use crate::store::{
    ClaimedJob, ListVersion, NewJob, NewList, NewScreening, Store, StoreError, Whose, events, jobs, prospects,
};

/// The job kind that re-screens users against a newly loaded list, one page per job.
pub const RESCREEN_JOB: &str = "sanctions.rescreen";
const RESCREEN_PAGE: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum SanctionsError {
    #[error("no sanctions list is loaded; run `onboard sanctions load`")]
    NotLoaded,
    /// Some of the lists asked for (or chosen for the partner) have no version loaded: a
    /// screening against fewer lists than chosen would pass people unscreened.
    #[error("the sanctions lists {0} are not loaded; run `onboard sanctions load --source …`")]
    Missing(String),
    #[error("the list files are invalid: {0}")]
    Invalid(#[from] ParseError),
    #[error("{0}")]
    Fetch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A list version and its index, as one unit: a screening never mixes two versions of a list.
pub struct LoadedList {
    pub version: ListVersion,
    pub index: SanctionsIndex,
}

/// One list version a screening was judged against.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScreenedList {
    pub list: ListSource,
    pub version: i64,
    pub published_on: Option<String>,
}

/// The answer to one screening: the lists it was judged against and the candidates.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Screening {
    /// The newest of the list versions screened against: the one id a reason quotes.
    pub list_version: i64,
    /// That version's publication date.
    pub list_published: Option<String>,
    /// Every list version screened against, in list order.
    pub lists: Vec<ScreenedList>,
    pub decision: Decision,
    /// From every list, the strongest first; each names its list.
    pub matches: Vec<Candidate>,
}

impl Screening {
    pub fn top_score(&self) -> Option<f64> {
        self.matches.first().map(|c| c.score)
    }
}

/// The lists one process screens with: the newest loaded version of each, in list order.
pub type Loaded = Arc<Vec<Arc<LoadedList>>>;

/// The current lists, shared by the HTTP surfaces and the job workers of one process.
#[derive(Clone, Default)]
pub struct Sanctions {
    current: Arc<RwLock<Loaded>>,
    policy: MatchPolicy,
}

impl Sanctions {
    pub fn new(policy: MatchPolicy) -> Self {
        Self { current: Arc::default(), policy }
    }

    /// Every list loaded (empty when none is).
    pub fn current(&self) -> Loaded {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The loaded version of one list.
    pub fn loaded(&self, list: ListSource) -> Option<Arc<LoadedList>> {
        self.current().iter().find(|l| l.version.list == list).cloned()
    }

    /// Makes the database's newest version of each list the ones this process screens with
    /// (lists already current are kept as they are). Parsing and indexing run off the async
    /// runtime. A stored version that does not parse (a reader made stricter since it was
    /// stored) is an error and changes nothing loaded: screening on without one list would
    /// pass people unscreened against it, and a node that starts with it screens nothing (and
    /// says so) rather than fall back to the built-in snapshot over the operator's lists.
    pub async fn refresh(&self, store: &Store) -> Result<Loaded, SanctionsError> {
        let versions = store.current_sanctions_lists().await?;
        let current = self.current();
        let mut fresh = Vec::new();
        for version in versions {
            if current.iter().any(|l| l.version.id == version.id) {
                continue;
            }
            let files = store.sanctions_list_files(&version).await?;
            let entries = tokio::task::spawn_blocking(move || parse_list(&files).map(|parsed| parsed.entries))
                .await
                .map_err(|e| SanctionsError::Fetch(format!("parse panicked: {e}")))??;
            fresh.push(self.index(version, entries).await?);
        }
        Ok(self.publish(fresh))
    }

    /// After `stored` was written from `prepared`: screens with it unless a newer version of
    /// its list is loaded, indexing the entries parsed while preparing (one parse per load).
    pub async fn adopt(&self, store: &Store, stored: &ListVersion, prepared: Parsed) -> Result<(), SanctionsError> {
        let newest = store.current_sanctions_lists().await?;
        let is_newest = newest.iter().any(|v| v.id == stored.id);
        let already = self.current().iter().any(|l| l.version.id == stored.id);
        if is_newest && !already {
            let loaded = self.index(stored.clone(), prepared.0).await?;
            self.publish(vec![loaded]);
            Ok(())
        } else {
            self.refresh(store).await.map(drop)
        }
    }

    /// Puts freshly indexed versions beside the others; of two versions of one list the newer
    /// stays, so two refreshes that cross never step a list back.
    fn publish(&self, fresh: Vec<Arc<LoadedList>>) -> Loaded {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if fresh.is_empty() {
            metrics::gauge!("sanctions_list_loaded").set(if current.is_empty() { 0.0 } else { 1.0 });
            return current.clone();
        }
        let mut lists: Vec<Arc<LoadedList>> = current.iter().cloned().collect();
        for loaded in fresh {
            match lists.iter_mut().find(|l| l.version.list == loaded.version.list) {
                Some(slot) if slot.version.id < loaded.version.id => *slot = loaded,
                Some(_) => {}
                None => lists.push(loaded),
            }
        }
        lists.sort_by_key(|l| l.version.list);
        metrics::gauge!("sanctions_list_loaded").set(1.0);
        *current = Arc::new(lists);
        current.clone()
    }

    async fn index(&self, version: ListVersion, entries: Vec<parse::Entry>) -> Result<Arc<LoadedList>, SanctionsError> {
        let policy = self.policy;
        let list = version.list;
        let started = Instant::now();
        let id = version.id;
        let index = tokio::task::spawn_blocking(move || SanctionsIndex::build(entries, policy).for_list(list, id))
            .await
            .map_err(|e| SanctionsError::Fetch(format!("index build panicked: {e}")))?;
        metrics::histogram!("sanctions_index_build_seconds", "list" => list.as_str())
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("sanctions_list_version", "list" => list.as_str()).set(version.id as f64);
        metrics::gauge!("sanctions_index_names", "list" => list.as_str()).set(index.name_count() as f64);
        tracing::info!(
            list = list.as_str(),
            version = version.id,
            entries = index.entry_count(),
            names = index.name_count(),
            "sanctions list loaded"
        );
        Ok(Arc::new(LoadedList { version, index }))
    }

    /// Validates and stores a list publication, then loads it. Loading the same files again
    /// changes nothing and says so (`false`).
    pub async fn install(
        &self,
        store: &Store,
        publication: Publication,
    ) -> Result<(ListVersion, bool), SanctionsError> {
        let (list, parsed) = prepare(publication).await?;
        let (version, created) = store.insert_sanctions_list(list, now_ms()).await?;
        self.adopt(store, &version, parsed).await?;
        Ok((version, created))
    }

    /// Screens against the current lists (those of `lists`, or all), without recording it
    /// (`core::staff::screen` records). With none of them loaded there is no answer: a person
    /// is never passed unscreened.
    pub fn screen(&self, query: &Query, lists: Option<&ListSelection>) -> Result<Screening, SanctionsError> {
        let current = self.current();
        let chosen: Vec<&LoadedList> =
            current.iter().map(|l| &**l).filter(|l| lists.is_none_or(|s| s.contains(l.version.list))).collect();
        if chosen.is_empty() && lists.is_none() {
            return Err(SanctionsError::NotLoaded);
        }
        if let Some(missing) = lists.and_then(|s| s.missing(chosen.iter().map(|l| l.version.list))) {
            return Err(SanctionsError::Missing(missing));
        }
        Ok(screen_with(&chosen, query))
    }

    /// Screens a person for onboarding and returns the screening with the row that records it
    /// (the caller stores it in the transaction that acts on it).
    pub fn screen_person(
        &self,
        query: &Query,
        lists: Option<&ListSelection>,
        actor: &str,
        partner: Option<PartnerId>,
        user: Option<UserId>,
    ) -> Result<(Screening, NewScreening), SanctionsError> {
        let screening = self.screen(query, lists)?;
        let row = screening_row(&screening, query, actor, partner, user);
        Ok((screening, row))
    }

    /// One page of re-screening after a list load (the `sanctions.rescreen` job): users whose
    /// screening now reaches `review` or `match` on an entry compliance has not cleared them of
    /// (or one that changed since), and who were not already a compliance case, move to
    /// `UpgradePending/Compliance`. Returns how many moved, or `None` if the lease was lost.
    pub async fn rescreen_page(
        &self,
        store: &Store,
        job: &ClaimedJob,
        threads: usize,
    ) -> Result<Option<u64>, SanctionsError> {
        let page: RescreenPage =
            serde_json::from_str(&job.payload).map_err(|e| SanctionsError::Fetch(format!("bad payload: {e}")))?;
        let current = self.refresh(store).await?;
        let mut changed = current.iter().find(|l| l.version.id == page.list_id).map(|l| l.version.list);
        if changed.is_none() && page.partner_id.is_some() {
            // A partner's users against a list its choice gained: a newer version of that list
            // may have re-screened everyone before the choice committed, so this run screens
            // against the list as it is now.
            changed = page.list.filter(|list| current.iter().any(|l| l.version.list == *list));
        }
        let Some(changed) = changed else {
            if store.current_sanctions_lists().await?.iter().any(|v| v.id == page.list_id) {
                // The newest version of its list, stored but not loadable here: try again later.
                return Err(SanctionsError::Fetch(format!("list version {} could not be loaded", page.list_id)));
            }
            // A newer version of the list arrived meanwhile; its own re-screening covers everyone.
            return Ok(commit_rescreen_page(store, job, Vec::new(), None, now_ms()).await?.map(|_| 0));
        };
        let people = store.screenable_people(page.after_user_id, RESCREEN_PAGE, page.partner_id).await?;
        // A page is ~100 ms of matching: on the runtime it would hold one of its workers that
        // long, and the requests queued on it with it (`POST /User` p99 39 ms beside a
        // re-screening, BENCHMARKS.md, issue 27).
        let (people, outcomes) = tokio::task::spawn_blocking(move || {
            // The users whose partner screens against the list that changed, each against every
            // list of its partner's choice: the newest screening of a user then always holds
            // every candidate it has, which is what a case shows and a clearance remembers.
            let rescreen_all = |people: &[ScreenablePerson]| {
                people
                    .iter()
                    .filter(|p| screens_against(p, changed))
                    .map(|p| rescreen_one(&current, p))
                    .collect::<Vec<_>>()
            };
            if threads <= 1 {
                let outcomes = rescreen_all(&people);
                return (people, outcomes);
            }
            let part = people.len().div_ceil(threads).max(1);
            let outcomes: Vec<RescreenOutcome> = std::thread::scope(|scope| {
                let parts: Vec<_> = people.chunks(part).map(|part| scope.spawn(|| rescreen_all(part))).collect();
                parts
                    .into_iter()
                    .flat_map(|part| part.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            });
            (people, outcomes)
        })
        .await
        .map_err(|e| SanctionsError::Fetch(format!("re-screening a page failed: {e}")))?;
        let next = (people.len() as i64 == RESCREEN_PAGE)
            .then(|| RescreenPage { after_user_id: people.last().map_or(0, |p| p.id), ..page }.job(now_ms()));
        let committed = commit_rescreen_page(store, job, outcomes, next, now_ms()).await?;
        if let Some(c) = &committed {
            metrics::counter!("sanctions_rescreened_users_total").increment(people.len() as u64);
            metrics::counter!("sanctions_rescreen_flagged_total").increment(c.moved);
            // Users whose only candidates are entries compliance cleared them of, unchanged.
            metrics::counter!("sanctions_rescreen_skipped_total").increment(c.skipped);
            metrics::gauge!("sanctions_rescreen_last_user_id").set(people.last().map_or(0, |p| p.id) as f64);
        }
        Ok(committed.map(|c| c.moved))
    }
}

/// One page of a re-screening (the `sanctions.rescreen` job's payload): the users after
/// `after_user_id` against list version `list_id` — all users, or, when a partner's choice
/// gained lists, that partner's only (`partner_id`, with `run` telling two such choices apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RescreenPage {
    pub list_id: i64,
    pub after_user_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
    /// The list of `list_id` (a partner's run screens against its current version if it changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<ListSource>,
}

impl RescreenPage {
    /// The job that re-screens this page, keyed so that each page is enqueued once.
    pub fn job(self, now: i64) -> NewJob {
        let key = match (self.partner_id, self.run) {
            (Some(partner), run) => {
                format!("{RESCREEN_JOB}:{}:partner:{partner}:{}:{}", self.list_id, run.unwrap_or(0), self.after_user_id)
            }
            (None, _) => format!("{RESCREEN_JOB}:{}:{}", self.list_id, self.after_user_id),
        };
        let payload = serde_json::to_value(self).unwrap_or_default();
        NewJob::new(RESCREEN_JOB, payload, now).dedupe(key)
    }
}

/// One user's re-screening: its screening row and the candidates that are not `clear`, best first.
#[derive(Debug, Clone)]
struct RescreenOutcome {
    user_id: i64,
    partner_id: i64,
    screening: NewScreening,
    candidates: Vec<RescreenCandidate>,
}

#[derive(Debug, Clone)]
struct RescreenCandidate {
    entity_id: i64,
    fingerprint: String,
    /// The event's reason when this candidate opens the case.
    reason: String,
}

struct RescreenCommit {
    moved: u64,
    skipped: u64,
}

/// The person's partner's choice of lists (a choice that no longer parses is read as every
/// list: screening more is the safe side).
fn choice_of(person: &ScreenablePerson) -> Option<ListSelection> {
    person.sanctions_lists.as_deref().and_then(|s| ListSelection::parse(s).ok())
}

/// Whether the person's partner screens its users against `list`.
fn screens_against(person: &ScreenablePerson, list: ListSource) -> bool {
    choice_of(person).is_none_or(|s| s.contains(list))
}

/// One person of a re-screening page against the lists of its partner's choice among
/// `current`: the screening to record, and the entries that now reach `review` or `match`.
fn rescreen_one(current: &[Arc<LoadedList>], person: &ScreenablePerson) -> RescreenOutcome {
    let query =
        person_query(person.full_name(), person.date_of_birth.as_deref().and_then(parse_date), person.country.clone());
    let choice = choice_of(person);
    let lists: Vec<&LoadedList> =
        current.iter().map(|l| &**l).filter(|l| choice.as_ref().is_none_or(|s| s.contains(l.version.list))).collect();
    let screening = screen_with(&lists, &query);
    let partner = PartnerId::new(person.partner_id).ok();
    let user = UserId::new(person.id).ok();
    let row = screening_row(&screening, &query, "sanctions:rescreen", partner, user);
    let candidates = screening
        .matches
        .iter()
        .filter(|c| c.decision != Decision::Clear)
        .map(|c| RescreenCandidate {
            entity_id: c.entity_id,
            fingerprint: c.fingerprint.clone(),
            reason: format!(
                "{} list {}: {} {} ({})",
                c.list,
                c.list_version,
                c.decision.as_str(),
                c.entity_id,
                c.reasons.join("; ")
            ),
        })
        .collect();
    RescreenOutcome { user_id: person.id, partner_id: person.partner_id, screening: row, candidates }
}

/// Commits one page of re-screening: the screenings, the moves to `Compliance`, the next page's
/// job and this job's completion, all or nothing (`None` when the lease was lost: nothing is
/// written). Whether a user moves is decided here, under the user's row lock, from the state
/// and clearances as they are at commit — not as they were when the page was read — so a case
/// cleared meanwhile is reopened by a new entity and not by the entry just cleared.
async fn commit_rescreen_page(
    store: &Store,
    job: &ClaimedJob,
    outcomes: Vec<RescreenOutcome>,
    next: Option<NewJob>,
    now: i64,
) -> Result<Option<RescreenCommit>, StoreError> {
    let job = job.clone();
    store
        .write(move |mut tx| {
            crate::store::pin_unit(async move {
                if !jobs::complete(&mut tx, &job, false, now).await? {
                    return Ok(None);
                }
                let mut done = RescreenCommit { moved: 0, skipped: 0 };
                let screenings: Vec<&NewScreening> = outcomes.iter().map(|o| &o.screening).collect();
                store_sanctions::insert_screenings(&mut tx, &screenings).await?;
                for outcome in outcomes.iter().filter(|o| !o.candidates.is_empty()) {
                    let whose = Whose::Id { user: outcome.user_id, partner: outcome.partner_id };
                    let Some(record) = prospects::lock(&mut tx, whose).await? else { continue };
                    let Some(state) = record.cip_state()? else { continue };
                    if state.status == Status::UpgradeFailed || state == CipState::COMPLIANCE {
                        continue; // already a case (or decided): the screening is on record for it
                    }
                    let cleared = store_sanctions::cleared_matches(&mut tx, outcome.user_id).await?;
                    let open = outcome.candidates.iter().find(|c| {
                        !cleared.iter().any(|m| m.entity_id == c.entity_id && m.fingerprint == c.fingerprint)
                    });
                    let Some(open) = open else {
                        done.skipped += 1;
                        continue;
                    };
                    let Ok(flag) =
                        Transition::new(Some(state), CipState::COMPLIANCE, open.reason.clone(), "sanctions:rescreen")
                    else {
                        continue;
                    };
                    if events::transition(&mut tx, outcome.user_id, outcome.partner_id, &flag, now).await? {
                        done.moved += 1;
                    }
                }
                if let Some(next) = &next {
                    jobs::enqueue(&mut tx, next, now).await?;
                }
                Ok(Some(done))
            })
        })
        .await
}

/// Parses a publication of any list, by the list's own format; a list without entries is an
/// error (a truncated download must not replace a list with nothing).
pub fn parse_list(files: &ListFiles) -> Result<ParsedList, ParseError> {
    let parsed = match files.source() {
        ListSource::OfacSdn | ListSource::OfacCons => parse::parse_ofac(files)?,
        ListSource::Un => un::parse_un(files.nth(0)).map(|l| ParsedList::of_entries(l.entries, l.generated_on))?,
        ListSource::Eu => eu::parse_eu(files.nth(0))?,
        ListSource::Uk => uk::parse_uk(files.nth(0))?,
    };
    if parsed.entries.is_empty() {
        return Err(ParseError::Empty(files.names()[0]));
    }
    // An id names one entry: a case, a clearance and the console all look entries up by it.
    let mut ids: Vec<i64> = parsed.entries.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    if let Some(twice) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(ParseError::Duplicate { file: files.names()[0], id: twice[0] });
    }
    Ok(parsed)
}

/// How a person (a user, not a vessel or a company) is screened, wherever it is screened: the
/// whole name, the date of birth and the country corroborate.
pub fn person_query(name: String, date_of_birth: Option<time::Date>, country: Option<String>) -> Query {
    Query { name, date_of_birth, country, kind: Some(EntityKind::Individual) }
}

/// Screens against each of `lists` and merges the candidates, strongest first as each index
/// orders its own (a corroborated match before a review, then by score).
fn screen_with(lists: &[&LoadedList], query: &Query) -> Screening {
    let started = Instant::now();
    let mut matches: Vec<Candidate> = Vec::new();
    for loaded in lists {
        matches.extend(loaded.index.screen(query));
    }
    if lists.len() > 1 {
        matches.sort_by(|a, b| {
            let strength = b.decision.cmp(&a.decision).then(b.score.total_cmp(&a.score));
            strength.then(a.list.cmp(&b.list)).then(a.entity_id.cmp(&b.entity_id))
        });
    }
    metrics::histogram!("sanctions_screen_seconds").record(started.elapsed().as_secs_f64());
    let newest = lists.iter().max_by_key(|l| l.version.id);
    Screening {
        list_version: newest.map_or(0, |l| l.version.id),
        list_published: newest.and_then(|l| l.version.published_on.clone()),
        lists: lists
            .iter()
            .map(|l| ScreenedList {
                list: l.version.list,
                version: l.version.id,
                published_on: l.version.published_on.clone(),
            })
            .collect(),
        decision: matches.first().map_or(Decision::Clear, |c| c.decision),
        matches,
    }
}

fn screening_row(
    screening: &Screening,
    query: &Query,
    actor: &str,
    partner: Option<PartnerId>,
    user: Option<UserId>,
) -> NewScreening {
    // Which list versions the answer covers, kept with the question: a clear screening is
    // evidence of what it was clear against.
    let query_json = serde_json::json!({
        "name": query.name,
        "dateOfBirth": query.date_of_birth.map(|d| d.to_string()),
        "country": query.country,
        "type": query.kind,
        "lists": screening.lists,
    });
    NewScreening {
        list_id: screening.list_version,
        partner,
        user,
        actor: actor.to_owned(),
        query: query_json.to_string(),
        decision: screening.decision.as_str().to_owned(),
        top_score: screening.top_score(),
        matches: serde_json::to_string(&screening.matches).unwrap_or_else(|_| "[]".into()),
        created_at: now_ms(),
    }
}

/// A list publication as read from a directory or downloaded: its files (which say which list
/// it is), where they came from, and its publication date when known.
#[derive(Clone)]
pub struct Publication {
    pub files: ListFiles,
    pub source: String,
    pub published_on: Option<String>,
}

/// The entries a publication was parsed into while it was prepared, kept for indexing.
pub struct Parsed(Vec<parse::Entry>);

/// Parses a publication's files (off the async runtime) into the list version to store, with
/// the job that re-screens users against it, and the parsed entries (`Sanctions::adopt`).
pub async fn prepare(publication: Publication) -> Result<(NewList, Parsed), SanctionsError> {
    let Publication { files, source, published_on } = publication;
    let (files, parsed, sha256) = tokio::task::spawn_blocking(move || {
        let parsed = parse_list(&files)?;
        let sha256 = files.digest();
        Ok::<_, ParseError>((files, parsed, sha256))
    })
    .await
    .map_err(|e| SanctionsError::Fetch(format!("parse panicked: {e}")))??;
    let rescreen = NewJob::new(RESCREEN_JOB, serde_json::json!({ "afterUserId": 0 }), now_ms());
    // The XML lists say when they were generated; a date given by the operator comes first.
    let published_on = published_on.or_else(|| parsed.generated_on.map(|d| d.to_string()));
    let list = NewList { files, sha256, published_on, source, counts: parsed.counts, rescreen };
    Ok((list, Parsed(parsed.entries)))
}

/// Reads a list's files from a directory (the first of `ListSource::file_names` is required)
/// and its `PUBLISHED` date if any.
pub fn read_dir(dir: &Path, list: ListSource) -> Result<(ListFiles, Option<String>), SanctionsError> {
    let mut files = ListFiles::new(list);
    for (at, name) in list.file_names().iter().enumerate() {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                files.set(name, bytes);
            }
            Err(e) if at > 0 && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SanctionsError::Fetch(format!("{}: {e}", path.display()))),
        }
    }
    let published = std::fs::read_to_string(dir.join("PUBLISHED")).ok().and_then(published_date);
    Ok((files, published))
}

/// A `PUBLISHED` file's date, when it holds one.
fn published_date(text: String) -> Option<String> {
    let date = text.trim();
    parse_date(date).is_some().then(|| date.to_owned())
}

impl Publication {
    /// The list in a directory (`read_dir`), with the directory as its source.
    pub fn from_dir(dir: &Path, list: ListSource) -> Result<Self, SanctionsError> {
        let (files, published_on) = read_dir(dir, list)?;
        Ok(Self { files, source: format!("dir:{}", dir.display()), published_on })
    }
}

/// The OFAC snapshot built into the binary (`data/ofac` at build time, compressed by build.rs):
/// what a fresh install screens with when no list directory is configured.
pub fn builtin() -> Result<Publication, SanctionsError> {
    macro_rules! packed {
        ($name:literal) => {
            include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".deflate")).as_slice()
        };
    }
    let inflate = |name: &str, packed: &[u8]| {
        miniz_oxide::inflate::decompress_to_vec(packed)
            .map_err(|e| SanctionsError::Fetch(format!("built-in {name} is damaged: {e:?}")))
    };
    let mut files = ListFiles::new(ListSource::OfacSdn);
    for (name, packed) in [
        ("sdn.csv", packed!("sdn.csv")),
        ("alt.csv", packed!("alt.csv")),
        ("add.csv", packed!("add.csv")),
        ("sdn_comments.csv", packed!("sdn_comments.csv")),
    ] {
        files.set(name, inflate(name, packed)?);
    }
    let published = String::from_utf8(inflate("PUBLISHED", packed!("PUBLISHED"))?).ok().and_then(published_date);
    let source = format!("builtin:{}", published.as_deref().unwrap_or("unknown"));
    Ok(Publication { files, source, published_on: published })
}

/// The shipped OFAC snapshot (`data/ofac`) or the small fixture (`tests/fixtures/ofac-small`), for tests.
#[cfg(test)]
pub(crate) fn test_files(relative: &str) -> ListFiles {
    read_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join(relative), ListSource::OfacSdn).expect("test list files").0
}
