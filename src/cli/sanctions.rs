//! `onboard sanctions …`: load a list (directory or URL), screen a name, measure the engine.
//! Five lists can be loaded (`--source`), each its own versions; screening uses the newest
//! version of each (or those a partner chose).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Settings;
use crate::domain::now_ms;
use crate::sanctions::{
    self, EntityKind, ListFiles, ListSelection, ListSource, Query, Sanctions, SanctionsIndex, parse_list,
};
use crate::startup::open_store;

#[derive(Subcommand)]
pub enum SanctionsCommand {
    /// Load a list publication (`--source`, default OFAC SDN); the same files twice is a no-op.
    Load(LoadArgs),
    /// Screen one name against the current lists (the screening is recorded).
    Screen(ScreenArgs),
    /// Show the version of each list in use.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Measure load time, index size, memory and per-query latency on one core.
    Bench(BenchArgs),
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// A directory holding the list's files under their published names (e.g. data/ofac:
    /// sdn.csv, alt.csv, add.csv, sdn_comments.csv; a UN directory: consolidated.xml).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// OFAC lists: the base URL of the files (https://www.treasury.gov/ofac/downloads, or
    /// …/downloads/consolidated for ofac-cons); the XML lists: the document's own URL.
    #[arg(long)]
    url: Option<String>,
    /// The OFAC SDN snapshot built into this binary (`data/ofac` when it was built).
    #[arg(long)]
    builtin: bool,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Which list the publication is.
    #[arg(long = "source", value_enum, default_value = "ofac-sdn")]
    list: ListSource,
    #[command(flatten)]
    source: Source,
    /// Publish date (YYYY-MM-DD); default: the directory's PUBLISHED file or the server's Last-Modified.
    #[arg(long)]
    published: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ScreenArgs {
    /// Full name, in any order (`Nicolas Maduro`, `MADURO MOROS, Nicolas`).
    #[arg(long)]
    name: String,
    /// Date of birth, YYYY-MM-DD.
    #[arg(long)]
    dob: Option<String>,
    /// Country (nationality, citizenship or residence), ISO 3166-1 alpha-2.
    #[arg(long)]
    country: Option<String>,
    #[arg(long = "type", value_enum)]
    kind: Option<EntityKind>,
    /// Only these lists, comma-separated (`ofac-sdn,un`); default: every list loaded.
    #[arg(long)]
    lists: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Build from this directory instead of the snapshot built into the binary.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also index these lists from their directories (`un=data/un`, repeatable), to measure
    /// every list together.
    #[arg(long = "with", value_parser = parse_list_dir)]
    with: Vec<(ListSource, PathBuf)>,
    /// Queries to time (cycled from the built-in mix of listed and common names).
    #[arg(long, default_value_t = 20_000)]
    queries: usize,
}

pub async fn run(settings: Settings, command: SanctionsCommand) -> anyhow::Result<()> {
    match command {
        SanctionsCommand::Load(args) => load(settings, args).await,
        SanctionsCommand::Screen(args) => screen(settings, args).await,
        SanctionsCommand::Status { json } => {
            let store = open_store(&settings).await?;
            let current = store.current_sanctions_lists().await?;
            store.close().await;
            if json {
                println!("{}", serde_json::to_string(&current)?);
            } else if current.is_empty() {
                println!("no sanctions list loaded");
            }
            for v in current.iter().filter(|_| !json) {
                println!(
                    "{:<9} version {} published {} from {}: {} entries, loaded at {}",
                    v.list.as_str(),
                    v.id,
                    v.published_on.as_deref().unwrap_or("(unknown)"),
                    v.source,
                    v.counts.entries,
                    crate::http::rfc3339(v.loaded_at)
                );
            }
            Ok(())
        }
        SanctionsCommand::Bench(args) => bench(args),
    }
}

async fn load(settings: Settings, args: LoadArgs) -> anyhow::Result<()> {
    if let Some(date) = &args.published
        && sanctions::parse_date(date).is_none()
    {
        bail!("--published must be a date like 2024-05-03");
    }
    let mut publication = read_source(args.list, &args.source).await?;
    if args.published.is_some() {
        publication.published_on = args.published;
    }
    let spinner = ProgressBar::new_spinner().with_message("parsing, storing and indexing");
    spinner.enable_steady_tick(Duration::from_millis(100));
    let started = Instant::now();
    let engine = Sanctions::new(settings.sanctions.policy);
    let result = super::staff::with_store(&settings, |store| async move {
        let actor = super::staff::cli_actor();
        Ok(crate::core::staff::load_sanctions_list(&store, &engine, publication, &actor, now_ms()).await?)
    })
    .await;
    spinner.finish_and_clear();
    let (version, created) = result?;
    if args.json {
        println!("{}", serde_json::json!({ "list": version, "created": created }));
    } else if created {
        let c = &version.counts;
        println!(
            "loaded {} list version {} ({} entries, {} alt names, {} addresses, {} orphan rows skipped) in {:.2?}; users are re-screened in the background",
            version.list,
            version.id,
            c.entries,
            c.alt_rows,
            c.address_rows,
            c.orphan_rows,
            started.elapsed()
        );
    } else {
        println!("{} list version {} is already loaded (same files); nothing changed", version.list, version.id);
    }
    Ok(())
}

/// The files of `--dir` or `--url`, their publication date if they say, and the source's name.
async fn read_source(list: ListSource, source: &Source) -> anyhow::Result<sanctions::Publication> {
    match (&source.dir, &source.url) {
        (Some(dir), _) => Ok(sanctions::Publication::from_dir(dir, list)?),
        (None, Some(url)) => {
            let (files, published_on) = download(list, url).await?;
            Ok(sanctions::Publication { files, source: url.clone(), published_on })
        }
        (None, None) if list == ListSource::OfacSdn => Ok(sanctions::builtin()?),
        (None, None) => bail!("--builtin holds the OFAC SDN list only; give {list} a --dir or --url"),
    }
}

/// Downloads a list's files with a byte progress bar: OFAC's under a base URL (only the first
/// is required), an XML list's one document from its own URL.
async fn download(list: ListSource, url: &str) -> anyhow::Result<(ListFiles, Option<String>)> {
    crate::install_crypto_provider();
    let client = reqwest::Client::builder()
        .user_agent(concat!("onboard/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .build()?;
    let base = url.trim_end_matches('/');
    let mut files = ListFiles::new(list);
    let mut published = None;
    for (at, name) in list.file_names().iter().enumerate() {
        let url = if list.url_is_base() { format!("{base}/{name}") } else { url.to_owned() };
        let mut response = client.get(&url).send().await.with_context(|| format!("GET {url}"))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND && at > 0 {
            eprintln!("{name}: not published there; skipped");
            continue;
        }
        if !response.status().is_success() {
            bail!("GET {url}: {}", response.status());
        }
        // The XML lists say in the document when they were generated (`prepare` reads it): a
        // server's Last-Modified is only the day a copy was made.
        if at == 0 && list.url_is_base() {
            published = response
                .headers()
                .get(reqwest::header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .and_then(httpdate_to_date);
        }
        let bar = match response.content_length() {
            Some(len) => ProgressBar::new(len),
            None => ProgressBar::no_length(),
        };
        bar.set_style(
            ProgressStyle::with_template("{msg:>18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(*name);
        let mut bytes = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = response.chunk().await.with_context(|| format!("reading {url}"))? {
            bytes.extend_from_slice(&chunk);
            bar.inc(chunk.len() as u64);
        }
        bar.finish();
        files.set(name, bytes);
    }
    Ok((files, published))
}

/// `Fri, 03 May 2024 14:00:00 GMT` → `2024-05-03`.
fn httpdate_to_date(value: &str) -> Option<String> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(value, format).ok().map(|t| t.date().to_string())
}

async fn screen(settings: Settings, args: ScreenArgs) -> anyhow::Result<()> {
    let query = screen_query(&args)?;
    let lists = args.lists.as_deref().map(ListSelection::parse).transpose().context("--lists")?;
    let engine = Sanctions::new(settings.sanctions.policy);
    let screening = super::staff::with_store(&settings, |store| async move {
        engine.refresh(&store).await?;
        let actor = super::staff::cli_actor();
        Ok(crate::core::staff::screen(&store, &engine, &query, lists.as_ref(), &actor, now_ms()).await?)
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&screening)?);
    } else if screening.matches.is_empty() {
        let lists: Vec<String> = screening.lists.iter().map(|l| format!("{} version {}", l.list, l.version)).collect();
        println!("clear: nothing reaches review on {}", lists.join(", "));
    } else {
        for c in &screening.matches {
            println!(
                "{:<7} {:.3}  {:<9} {:>6}  {}  ({})",
                c.decision.as_str(),
                c.score,
                c.list.as_str(),
                c.entity_id,
                c.name,
                c.reasons.join("; ")
            );
        }
    }
    Ok(())
}

fn screen_query(args: &ScreenArgs) -> anyhow::Result<Query> {
    Ok(Query {
        name: args.name.clone(),
        date_of_birth: match &args.dob {
            Some(d) => Some(sanctions::parse_date(d).context("--dob must be a date like 1962-11-23")?),
            None => None,
        },
        country: match &args.country {
            Some(c) if sanctions::is_country_code(&c.to_ascii_uppercase()) => Some(c.to_ascii_uppercase()),
            Some(c) => bail!("--country {c:?} is not an ISO 3166-1 alpha-2 code"),
            None => None,
        },
        kind: args.kind,
    })
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let rss_start = crate::telemetry::rss_kib(std::process::id());
    let sdn = match &args.dir {
        Some(dir) => sanctions::read_dir(dir, ListSource::OfacSdn)?.0,
        None => sanctions::builtin()?.files,
    };
    let mut indexes = vec![time_index_build(sdn)?];
    for (list, dir) in &args.with {
        indexes.push(time_index_build(sanctions::read_dir(dir, *list)?.0)?);
    }
    time_queries(&indexes[0], args.queries);
    if indexes.len() > 1 {
        if let (Some(before), Some(after)) = (rss_start, crate::telemetry::rss_kib(std::process::id())) {
            println!("memory, every list: +{:.1} MiB", (after.saturating_sub(before)) as f64 / 1024.0);
        }
        // As a screening does: every index in turn, the candidates merged.
        let all = |query: &Query| indexes.iter().flat_map(|index| index.screen(query)).collect::<Vec<_>>();
        let queries = crate::sanctions::eval::bench_queries(&indexes[0]);
        time_mix(&all, "screen, every list", &queries, args.queries);
    }
    Ok(())
}

/// `un=data/un`.
fn parse_list_dir(text: &str) -> Result<(ListSource, PathBuf), String> {
    let (list, dir) = text.split_once('=').ok_or("expected LIST=DIR, e.g. un=data/un")?;
    let list = ListSource::parse(list).ok_or_else(|| format!("{list:?} is not a list ({})", ListSource::NAMES))?;
    Ok((list, PathBuf::from(dir)))
}

/// Parses and indexes one list, printing how long each step took and the memory it took.
fn time_index_build(files: ListFiles) -> anyhow::Result<SanctionsIndex> {
    let list = files.source();
    let rss_before = crate::telemetry::rss_kib(std::process::id());
    let started = Instant::now();
    let parsed = parse_list(&files)?;
    let parse = started.elapsed();
    drop(files);
    let entries = parsed.entries.len();
    let index = SanctionsIndex::build(parsed.entries, Default::default()).for_list(list, 0);
    let total = started.elapsed();
    let rss_after = crate::telemetry::rss_kib(std::process::id());
    println!(
        "load {list}: {entries} entries, {} names, {} index keys; parse {parse:.2?}, total with index {total:.2?}",
        index.name_count(),
        index.key_count()
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "memory {list}: RSS {:.1} MiB before, {:.1} MiB after (+{:.1} MiB)",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            (after.saturating_sub(before)) as f64 / 1024.0
        );
    }
    Ok(index)
}

/// Screens `count` queries of the built-in mix on one thread, then common names in Arabic script,
/// printing throughput and latency for each.
fn time_queries(index: &SanctionsIndex, count: usize) {
    let one = |query: &Query| index.screen(query);
    time_mix(&one, "screen", &crate::sanctions::eval::bench_queries(index), count);
    let arabic: Vec<Query> = crate::sanctions::eval::arabic_common_probes(2_000).into_iter().map(|p| p.0).collect();
    time_mix(&one, "screen, Arabic script", &arabic, count / 4);
}

fn time_mix(screen: &dyn Fn(&Query) -> Vec<sanctions::Candidate>, label: &str, queries: &[Query], count: usize) {
    let mut latencies = Vec::with_capacity(count);
    let mut flagged = 0usize;
    let run = Instant::now();
    for query in queries.iter().cycle().take(count) {
        let t = Instant::now();
        let found = screen(query);
        latencies.push(t.elapsed());
        flagged += usize::from(!found.is_empty());
    }
    let elapsed = run.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{label}: {} queries ({} distinct, {} with candidates) on one thread in {elapsed:.2?}: {:.0}/s, p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        latencies.len(),
        queries.len(),
        flagged,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
}
