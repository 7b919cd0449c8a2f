//! `onboard sanctions …`: load a list (directory or URL), screen a name, measure the engine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Settings;
use crate::domain::now_ms;
use crate::sanctions::{self, EntityKind, ListFiles, Query, Sanctions, SanctionsIndex, parse_list};
use crate::startup::open_store;

#[derive(Subcommand)]
pub enum SanctionsCommand {
    /// Load a list publication (sdn.csv, alt.csv, add.csv, sdn_comments.csv); the same files twice is a no-op.
    Load(LoadArgs),
    /// Screen one name against the current list (the screening is recorded).
    Screen(ScreenArgs),
    /// Show the current list version.
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
    /// A directory holding the four files (e.g. data/ofac).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Base URL to download the four files from, e.g. https://www.treasury.gov/ofac/downloads
    #[arg(long)]
    url: Option<String>,
    /// The snapshot built into this binary (`data/ofac` when it was built).
    #[arg(long)]
    builtin: bool,
}

#[derive(Args)]
pub struct LoadArgs {
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
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Build from this directory instead of the snapshot built into the binary.
    #[arg(long)]
    dir: Option<PathBuf>,
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
            let current = store.current_sanctions_list().await?;
            store.close().await;
            match (current, json) {
                (Some(v), true) => println!("{}", serde_json::to_string(&v)?),
                (Some(v), false) => println!(
                    "list {} published {} from {}: {} entries, loaded at {}",
                    v.id,
                    v.published_on.as_deref().unwrap_or("(unknown)"),
                    v.source,
                    v.counts.entries,
                    crate::http::rfc3339(v.loaded_at)
                ),
                (None, true) => println!("null"),
                (None, false) => println!("no sanctions list loaded"),
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
    let mut publication = read_source(&args.source).await?;
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
            "loaded list {} ({} entries, {} alt names, {} addresses, {} orphan rows skipped) in {:.2?}; users are re-screened in the background",
            version.id,
            c.entries,
            c.alt_rows,
            c.address_rows,
            c.orphan_rows,
            started.elapsed()
        );
    } else {
        println!("list {} is already loaded (same files); nothing changed", version.id);
    }
    Ok(())
}

/// The files of `--dir` or `--url`, their publication date if they say, and the source's name.
async fn read_source(source: &Source) -> anyhow::Result<sanctions::Publication> {
    match (&source.dir, &source.url) {
        (Some(dir), _) => Ok(sanctions::Publication::from_dir(dir)?),
        (None, Some(url)) => {
            let (files, published_on) = download(url).await?;
            Ok(sanctions::Publication { files, source: url.clone(), published_on })
        }
        (None, None) => Ok(sanctions::builtin()?),
    }
}

/// Downloads the four files with a byte progress bar. Only sdn.csv is required.
async fn download(base: &str) -> anyhow::Result<(ListFiles, Option<String>)> {
    crate::install_crypto_provider();
    let client = reqwest::Client::builder()
        .user_agent(concat!("onboard/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .build()?;
    let base = base.trim_end_matches('/');
    let mut files = ListFiles::default();
    let mut published = None;
    for name in ListFiles::NAMES {
        let url = format!("{base}/{name}");
        let mut response = client.get(&url).send().await.with_context(|| format!("GET {url}"))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND && name != "sdn.csv" {
            eprintln!("{name}: not published there; skipped");
            continue;
        }
        if !response.status().is_success() {
            bail!("GET {url}: {}", response.status());
        }
        if name == "sdn.csv" {
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
        bar.set_message(name);
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
    let engine = Sanctions::new(settings.sanctions.policy);
    let screening = super::staff::with_store(&settings, |store| async move {
        engine.refresh(&store).await?;
        Ok(crate::core::staff::screen(&store, &engine, &query, &super::staff::cli_actor(), now_ms()).await?)
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&screening)?);
    } else if screening.matches.is_empty() {
        println!("clear: nothing reaches review on list {}", screening.list_version);
    } else {
        for c in &screening.matches {
            println!(
                "{:<7} {:.3}  {:>6}  {}  ({})",
                c.decision.as_str(),
                c.score,
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
    let index = time_index_build(&args)?;
    time_queries(&index, args.queries);
    Ok(())
}

/// Reads, parses and indexes the list, printing how long each step took and the memory it took.
fn time_index_build(args: &BenchArgs) -> anyhow::Result<SanctionsIndex> {
    let rss_before = crate::telemetry::rss_kib(std::process::id());
    let started = Instant::now();
    let files = match &args.dir {
        Some(dir) => sanctions::read_dir(dir)?.0,
        None => sanctions::builtin()?.files,
    };
    let read = started.elapsed();
    let parsed = parse_list(&files)?;
    let parse = started.elapsed() - read;
    drop(files);
    let entries = parsed.entries.len();
    let index = SanctionsIndex::build(parsed.entries, Default::default());
    let total = started.elapsed();
    let rss_after = crate::telemetry::rss_kib(std::process::id());
    println!(
        "load: {entries} entries, {} names, {} index keys; read {read:.2?}, parse {parse:.2?}, total with index {total:.2?}",
        index.name_count(),
        index.key_count()
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "memory: RSS {:.1} MiB before, {:.1} MiB after (+{:.1} MiB)",
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
    time_mix(index, "screen", &crate::sanctions::eval::bench_queries(index), count);
    let arabic: Vec<Query> = crate::sanctions::eval::arabic_common_probes(2_000).into_iter().map(|p| p.0).collect();
    time_mix(index, "screen, Arabic script", &arabic, count / 4);
}

fn time_mix(index: &SanctionsIndex, label: &str, queries: &[Query], count: usize) {
    let mut latencies = Vec::with_capacity(count);
    let mut flagged = 0usize;
    let run = Instant::now();
    for query in queries.iter().cycle().take(count) {
        let t = Instant::now();
        let found = index.screen(query);
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
