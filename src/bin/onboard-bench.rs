//! `onboard-bench`: a load generator for a running server, outside the service's library (it
//! shares only the password settings and hasher, to measure the Argon2id ceiling). HTTP/1.1 keep-alive connections,
//! a unique body per request, closed-loop by default or at a fixed `--rate` (latency then counts
//! from when a request was due, so a stalled server cannot hide its queueing: no coordinated
//! omission). Prints throughput, latency percentiles, status counts and the server's RSS.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

#[derive(clap::Parser, Debug, Clone)]
#[command(name = "onboard-bench", version, about = "Load generator for a running Onboard server")]
pub struct BenchArgs {
    /// Base URL of the server under test.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// OAuth client id of the partner to drive the load as (route `user`).
    #[arg(long, env = "ONBOARD_BENCH_CLIENT_ID")]
    pub client_id: Option<String>,
    #[arg(long, env = "ONBOARD_BENCH_CLIENT_SECRET")]
    pub client_secret: Option<String>,
    /// The partner's API key (route `partner-users`).
    #[arg(long, env = "ONBOARD_BENCH_API_KEY")]
    pub api_key: Option<String>,
    /// Route `partner-users`: fraction of requests that repeat an earlier registration (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub replay_ratio: f64,
    /// Which route to drive.
    #[arg(long, value_enum, default_value = "user")]
    pub route: Route,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value = "10s")]
    pub duration: humantime::Duration,
    #[arg(long, default_value = "2s")]
    pub warmup: humantime::Duration,
    /// Total requests per second (open loop); omitted: as fast as the server answers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Send an `Idempotency-Key` on this fraction of requests (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub idempotency_keys: f64,
    /// PID of the server, to report its resident memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Route `signup`: skip the 6 s Argon2id ceiling measurement that otherwise runs (in this
    /// process, on every core) before the load; use it when another run is being measured.
    #[arg(long)]
    pub no_ceiling: bool,
    /// Also measure webhook delivery: start a receiver here, subscribe the partner of
    /// `--api-key` to every event at it (the server needs `webhooks.allow_loopback`), and report
    /// deliveries per second during the load and how long the backlog took to drain after it.
    #[arg(long)]
    pub webhooks: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum Route {
    /// Seed 001: `POST /User` with a bearer token.
    User,
    /// Seed 000: `POST /partner/users` with the `PartnerApiKey` header, new and replayed ids.
    PartnerUsers,
    /// Seed 002: `POST /register-user-v2` (new prospects that pass every check), then the time
    /// each took from acceptance to `Completed`, from its event timeline.
    RegisterV2,
    /// Seed 003: `POST /users` step 1 then step 2 with the sandbox code, as one sample (the
    /// partner must be a sandbox partner; raise `signup.per_ip_per_minute` on the server).
    /// Prints the machine's Argon2id ceiling first.
    Signup,
}

struct Target {
    host: String,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("http://").context("only http:// URLs are supported")?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let (host, port) = authority.rsplit_once(':').map_or((authority, "80"), |(h, p)| (h, p));
        Ok(Self { host: host.to_owned(), port: port.parse().context("port")? })
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

async fn send(sender: &mut SendRequest<Full<Bytes>>, request: Request<Full<Bytes>>) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// The partner id behind the credentials, from `GET /partner`.
async fn partner_id(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    header_name: &str,
    value: &str,
) -> anyhow::Result<i64> {
    let whoami = Request::get("/partner")
        .header(header::HOST, &target.host)
        .header(header_name, value)
        .body(Full::new(Bytes::new()))?;
    let (status, body) = send(sender, whoami).await?;
    if status != 200 {
        bail!("GET /partner answered {status}: {}", String::from_utf8_lossy(&body));
    }
    serde_json::from_slice::<Value>(&body)?["partnerId"].as_i64().context("GET /partner has no partnerId")
}

struct Sample {
    micros: u32,
    status: u16,
    /// When the request was due, in ms after the warm-up: tells one stall from a spread tail.
    sent_ms: u32,
}

// glibc malloc took ~20% of the server's CPU under load; the load generator shares the machine.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    use clap::Parser;
    match run(BenchArgs::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let target = Target::parse(&args.url)?;
    let mut setup = target.connect().await.context("cannot connect to the server")?;
    // The header every request carries, and the partner id for bodies that name it.
    let (auth_header, auth_value, partner_id) = match args.route {
        Route::User => {
            let (Some(id), Some(secret)) = (&args.client_id, &args.client_secret) else {
                bail!("route `user` needs --client-id and --client-secret");
            };
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            let token_request = Request::post("/oauth/token")
                .header(header::HOST, &target.host)
                .header(header::AUTHORIZATION, format!("Basic {basic}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from_static(b"grant_type=client_credentials")))?;
            let (status, body) = send(&mut setup, token_request).await?;
            if status != 200 {
                bail!("POST /oauth/token answered {status}: {}", String::from_utf8_lossy(&body));
            }
            let token =
                serde_json::from_slice::<Value>(&body)?["access_token"].as_str().context("no access_token")?.to_owned();
            (
                "authorization",
                format!("Bearer {token}"),
                partner_id(&mut setup, &target, "authorization", &format!("Bearer {token}")).await?,
            )
        }
        Route::PartnerUsers | Route::RegisterV2 | Route::Signup => {
            let key = args.api_key.clone().context("this route needs --api-key")?;
            let id = partner_id(&mut setup, &target, "partnerapikey", &key).await?;
            ("partnerapikey", key, id)
        }
    };

    let deliveries = if args.webhooks {
        let key = args.api_key.clone().context("--webhooks needs --api-key")?;
        Some(webhook_receiver(&mut setup, &target, &key).await?)
    } else {
        None
    };
    if matches!(args.route, Route::Signup) && !args.no_ceiling {
        argon2_ceiling().await?;
    }
    let warmup: Duration = args.warmup.into();
    let measure: Duration = args.duration.into();
    let start = Instant::now();
    let (measure_from, stop_at) = (start + warmup, start + warmup + measure);
    let interval = args.rate.map(|rate| Duration::from_secs_f64(args.connections as f64 / rate.max(0.001)));
    let run_id = uuid::Uuid::new_v4().simple().to_string();

    // The host's CPU steal over the measured window: on a shared VM a descheduled vCPU stalls
    // server and load generator alike, and tail latencies from such a run say nothing of the code.
    let steal = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let before = cpu_times();
        tokio::time::sleep_until(stop_at.into()).await;
        Some((before?, cpu_times()?))
    });
    let mut workers = Vec::with_capacity(args.connections);
    for worker in 0..args.connections {
        let mut sender = target.connect().await?;
        let (host, auth_value, run_id) = (target.host.clone(), auth_value.clone(), run_id[..8].to_owned());
        let replay_ratio = args.replay_ratio.clamp(0.0, 1.0);
        let keyed_every = if args.idempotency_keys > 0.0 { (1.0 / args.idempotency_keys).round() as u64 } else { 0 };
        let route = args.route;
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(1 << 16);
            let mut accepted: Vec<String> = Vec::new();
            let phone_offset = u64::from_str_radix(&run_id[..6], 16).unwrap_or(0);
            let mut registered: Vec<u64> = Vec::new();
            let mut transport_errors = 0u64;
            let mut due = Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(worker as f64 / 64.0));
            for i in 0u64.. {
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                } else {
                    due = Instant::now();
                }
                if due >= stop_at {
                    break;
                }
                let request = match route {
                    // Built by `signup`, which sends two.
                    Route::Signup => Request::new(Full::new(Bytes::new())),
                    Route::User => {
                        let body = format!(
                            r#"{{"merchantId":{partner_id},"email":"bench.{run_id}.{worker}.{i}@example.org","additionalData":{{"type":"bench","data":{{"seq":{i}}}}}}}"#
                        );
                        let mut builder = Request::post("/User")
                            .header(header::HOST, &host)
                            .header(auth_header, &auth_value)
                            .header(header::CONTENT_TYPE, "application/json");
                        if keyed_every > 0 && i % keyed_every == 0 {
                            builder = builder.header("Idempotency-Key", format!("{run_id}-{worker}-{i}"));
                        }
                        builder.body(Full::new(Bytes::from(body))).expect("a valid request")
                    }
                    Route::PartnerUsers => {
                        // Every 1/ratio-th request repeats a registration this connection made.
                        let replay = (i as f64 * replay_ratio).floor() != ((i + 1) as f64 * replay_ratio).floor();
                        let n = match registered.len() {
                            len if replay && len > 0 => registered[(i as usize * 7919) % len],
                            _ => {
                                registered.push(i);
                                i
                            }
                        };
                        let body = format!(
                            r#"{{"externalUserId":"bench-{run_id}-{worker}-{n}","method":"EMAIL","identifier":"b.{run_id}.{worker}.{n}@example.org","type":"INDIVIDUAL","alias":"Bench {n}"}}"#
                        );
                        Request::post("/partner/users")
                            .header(header::HOST, &host)
                            .header(auth_header, &auth_value)
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .expect("a valid request")
                    }
                    Route::RegisterV2 => {
                        // Mexico City mobile numbers 55 2000 0000 – 55 9999 9999, disjoint per
                        // connection and run.
                        let seq = (phone_offset + worker as u64 * 1_000_000 + i) % 80_000_000;
                        let body = format!(
                            r#"{{"firstName":"Ana","middleName":"María","lastName":"Hernández","secondLastName":"Gómez","gender":"Female","dateOfBirth":"1990-05-17","email":"p.{run_id}.{worker}.{i}@correo.mx","phoneNumber":"+5255{:08}","language":"es","street":"Blvd. Kukulcan Km. 4.5","city":"Cancún","state":"MX-ROO","country":"MX","addressLatitude":21.1357,"addressLongitude":-86.7435}}"#,
                            20_000_000 + seq
                        );
                        Request::post("/register-user-v2")
                            .header(header::HOST, &host)
                            .header(auth_header, &auth_value)
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .expect("a valid request")
                    }
                };
                let outcome = match route {
                    Route::Signup => signup(&mut sender, &host, partner_id, &format!("s.{run_id}.{worker}.{i}@example.org")).await,
                    _ => send(&mut sender, request).await,
                };
                let done = Instant::now();
                if let (Route::RegisterV2, Ok((200, body))) = (route, &outcome)
                    && due >= measure_from
                    && let Some(id) = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["userId"].as_str().map(str::to_owned))
                {
                    accepted.push(id);
                }
                match outcome {
                    Ok((status, _)) if due >= measure_from => samples.push(Sample {
                        micros: u32::try_from(done.duration_since(due).as_micros()).unwrap_or(u32::MAX),
                        status,
                        sent_ms: u32::try_from(due.duration_since(measure_from).as_millis()).unwrap_or(u32::MAX),
                    }),
                    Ok(_) => {}
                    Err(_) => {
                        transport_errors += 1;
                        break;
                    }
                }
                if let Some(interval) = interval {
                    due += interval;
                }
            }
            (samples, transport_errors, accepted)
        }));
    }
    let mut samples = Vec::new();
    let mut transport_errors = 0;
    let mut accepted = Vec::new();
    for worker in workers {
        let (s, e, a) = worker.await?;
        samples.extend(s);
        transport_errors += e;
        accepted.extend(a);
    }
    report(&args, &samples, transport_errors, measure);
    if let Ok(Some(((busy0, steal0), (busy1, steal1)))) = steal.await {
        let (busy, stolen) = (busy1.saturating_sub(busy0), steal1.saturating_sub(steal0));
        println!(
            "  host steal   {:.1} % of the CPU time the machine's vCPUs wanted ({:.2} s stolen)",
            100.0 * stolen as f64 / (busy + stolen).max(1) as f64,
            stolen as f64 / 100.0
        );
    }
    if matches!(args.route, Route::RegisterV2) {
        time_to_completed(&target, &auth_value, &accepted).await?;
    }
    if let Some(deliveries) = deliveries {
        report_deliveries(&deliveries, measure_from, stop_at).await;
    }
    Ok(())
}

type Arrivals = std::sync::Arc<std::sync::Mutex<Vec<Instant>>>;

/// A receiver that answers 204 to everything and notes when each delivery arrived; subscribed
/// to every event of the partner of `key`.
async fn webhook_receiver(
    setup: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    key: &str,
) -> anyhow::Result<Arrivals> {
    let arrivals: Arrivals = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    let noted = arrivals.clone();
    let app = axum::Router::new().fallback(move || {
        let noted = noted.clone();
        async move {
            noted.lock().unwrap_or_else(|p| p.into_inner()).push(Instant::now());
            axum::http::StatusCode::NO_CONTENT
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let create = Request::post("/partner/webhooks")
        .header(header::HOST, &target.host)
        .header("partnerapikey", key)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(format!(r#"{{"url":"{url}","description":"onboard-bench"}}"#))))?;
    let (status, body) = send(setup, create).await?;
    if status != 201 {
        bail!("POST /partner/webhooks answered {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(arrivals)
}

/// Deliveries per second during the measured window, and the time the backlog took to drain
/// once the load stopped (no delivery for 2 s).
async fn report_deliveries(arrivals: &Arrivals, from: Instant, to: Instant) {
    let count = |a: &Arrivals| a.lock().unwrap_or_else(|p| p.into_inner()).len();
    let mut last = count(arrivals);
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count(arrivals);
        if now != last {
            (last, quiet_since) = (now, Instant::now());
        }
    }
    let arrived = arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let during = arrived.iter().filter(|t| **t >= from && **t < to).count();
    let window = to.duration_since(from).as_secs_f64();
    let drained = arrived.iter().max().map_or(0.0, |t| t.saturating_duration_since(to).as_secs_f64());
    println!(
        "  webhooks     {during} delivered while measuring ({:.0}/s), {} in all, backlog drained {drained:.1} s after the load",
        during as f64 / window,
        arrived.len()
    );
}

/// Step 1 then step 2 of seed 003 on a sandbox partner; the outcome of the first that failed,
/// or of step 2.
async fn signup(
    sender: &mut SendRequest<Full<Bytes>>,
    host: &str,
    partner: i64,
    email: &str,
) -> anyhow::Result<(u16, Bytes)> {
    let mut outcome = (0, Bytes::new());
    for code in ["", r#","emailConfirmCode":"12345""#] {
        let body = format!(r#"{{"userType":"CUSTOMER","email":"{email}","password":"Bench#2024xQ"{code}}}"#);
        let request = Request::post("/users")
            .header(header::HOST, host)
            .header("partnerId", partner.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        outcome = send(sender, request).await?;
        if outcome.0 != 200 {
            break;
        }
    }
    Ok(outcome)
}

/// What this machine's cores can hash with the server's Argon2id settings (`onboard.toml` and `ONBOARD_PASSWORD__*`), measured
/// here before the load starts: a sign-up costs one hash (step 1) and one verification (step 2).
async fn argon2_ceiling() -> anyhow::Result<()> {
    let settings = onboard::config::Settings::load(None)?.password;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in [1, cores] {
        let hasher = onboard::auth::passwords::PasswordHasher::start(&onboard::auth::passwords::PasswordSettings {
            workers: threads,
            queue: threads * 2,
            ..settings.clone()
        })
        .map_err(|e| anyhow::anyhow!(e))?;
        let until = Instant::now() + Duration::from_secs(3);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..threads {
            let hasher = hasher.clone();
            tasks.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    if hasher.hash("Bench#2024xQ").await.is_ok() {
                        n += 1;
                    }
                }
                n
            });
        }
        let mut hashes = 0;
        while let Some(n) = tasks.join_next().await {
            hashes += n?;
        }
        let per_sec = hashes as f64 / 3.0;
        println!(
            "argon2id m={} KiB t={} p={}, {threads} thread(s): {per_sec:.0} hashes/s ({:.1} ms each) → ceiling {:.0} sign-ups/s",
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            threads as f64 * 1000.0 / per_sec.max(0.001),
            per_sec / 2.0
        );
    }
    Ok(())
}

/// Waits for (a sample of) the accepted prospects to finish onboarding and prints how long each
/// took from acceptance to `Completed`, read from the server's own event timestamps.
async fn time_to_completed(target: &Target, api_key: &str, accepted: &[String]) -> anyhow::Result<()> {
    const SAMPLE: usize = 2000;
    let step = (accepted.len() / SAMPLE).max(1);
    let sample: Vec<&String> = accepted.iter().step_by(step).collect();
    let mut sender = target.connect().await?;
    let waited = Instant::now();
    let mut millis = Vec::with_capacity(sample.len());
    let mut other = 0;
    for user in &sample {
        loop {
            let request = Request::get(format!("/users/{user}/events"))
                .header(header::HOST, &target.host)
                .header("partnerapikey", api_key)
                .body(Full::new(Bytes::new()))?;
            let (status, body) = send(&mut sender, request).await?;
            if status != 200 {
                bail!("GET /users/{user}/events answered {status}");
            }
            let timeline: Value = serde_json::from_slice(&body)?;
            let events = timeline["events"].as_array().context("no events")?;
            let at = |e: &Value| {
                time::OffsetDateTime::parse(
                    e["at"].as_str().unwrap_or_default(),
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
            };
            let last = events.last().context("no events")?;
            match last["status"].as_str() {
                Some("UpgradeInProgress" | "AccountUpgradeInProgress")
                    if waited.elapsed() < Duration::from_secs(300) =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Some("Completed") => {
                    if let (Some(start), Some(end)) = (events.first().and_then(at), at(last)) {
                        millis.push((end - start).as_seconds_f64() * 1000.0);
                    }
                }
                _ => other += 1,
            }
            break;
        }
    }
    millis.sort_by(f64::total_cmp);
    let pct =
        |p: f64| millis.get(((p / 100.0) * millis.len() as f64).ceil().max(1.0) as usize - 1).copied().unwrap_or(0.0);
    println!(
        "  acceptance → Completed ({} of {} accepted sampled, {} not completed): p50 {:.0} ms  p90 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        millis.len(),
        accepted.len(),
        other,
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(100.0)
    );
    Ok(())
}

fn report(args: &BenchArgs, samples: &[Sample], transport_errors: u64, measured: Duration) {
    let mut latencies: Vec<u32> = samples.iter().map(|s| s.micros).collect();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        f64::from(latencies[rank.clamp(1, latencies.len()) - 1]) / 1000.0
    };
    let ok = samples.iter().filter(|s| (200..300).contains(&s.status)).count();
    let mut statuses = std::collections::BTreeMap::new();
    for s in samples {
        *statuses.entry(s.status).or_insert(0u64) += 1;
    }
    let secs = measured.as_secs_f64();
    println!(
        "route {:?}, {} connections, {} measured{}",
        args.route,
        args.connections,
        humantime::format_duration(measured),
        args.rate.map(|r| format!(", target rate {r}/s")).unwrap_or_default()
    );
    println!("  throughput   {:>10.0} ok/s   ({} requests, {} ok)", ok as f64 / secs, samples.len(), ok);
    println!(
        "  latency ms   p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9),
        pct(100.0)
    );
    println!("  statuses     {statuses:?}   transport errors {transport_errors}");
    // The tail's shape: requests slower than 10× the median, counted per 100 ms window of
    // send time. One crowded window is a stall (of the server, the disk or this process);
    // many thin ones are queueing spread over the run.
    let slow_from = (pct(50.0) * 10_000.0) as u32;
    let mut windows = std::collections::BTreeMap::new();
    for s in samples.iter().filter(|s| s.micros > slow_from) {
        let (count, max) = windows.entry(s.sent_ms / 100).or_insert((0u32, 0u32));
        *count += 1;
        *max = (*max).max(s.micros);
    }
    let mut crowded: Vec<_> = windows.into_iter().collect();
    crowded.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
    let shown: Vec<String> = crowded
        .iter()
        .take(5)
        .map(|(w, (n, max))| format!("{n} at {:.1} s (max {:.1} ms)", f64::from(*w) / 10.0, f64::from(*max) / 1000.0))
        .collect();
    println!(
        "  > 10× p50    {} requests in {} windows of 100 ms; most: {}",
        crowded.iter().map(|(_, (n, _))| n).sum::<u32>(),
        crowded.len(),
        if shown.is_empty() { "-".into() } else { shown.join(", ") }
    );
    let server_status = args.server_pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok());
    if let Some(status) = server_status {
        let field =
            |name: &str| status.lines().find(|l| l.starts_with(name)).map(|l| l[name.len()..].trim().to_owned());
        println!(
            "  server RSS   {} (peak {})",
            field("VmRSS:").unwrap_or_default(),
            field("VmHWM:").unwrap_or_default()
        );
    }
}

/// All CPUs' busy and stolen time in clock ticks of 10 ms (Linux `/proc/stat`; USER_HZ is 100 in
/// its ABI), `None` elsewhere.
/// Busy excludes idle and iowait; steal is time the hypervisor ran something else while a vCPU
/// had work.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).map_while(|f| f.parse().ok()).collect();
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    Some((at(0) + at(1) + at(2) + at(5) + at(6), at(7)))
}
