//! Building and running the server: `Application::build` binds (port 0 in tests) and wires
//! the state; `run_until` serves until the shutdown future resolves, then drains.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::KeyRing;
use crate::auth::credentials::IssuedCredentials;
use crate::config::Settings;
use crate::domain::now_ms;
use crate::http::{self, AppInner, AppState};
use crate::jobs::{JobOutcome, JobRegistry};
use crate::sanctions::{self, Sanctions, SanctionsError};
use crate::store::{Store, UserWriter};

/// How often a node reloads the signing keys, so a rotation made elsewhere takes effect.
pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

pub struct Application {
    listener: TcpListener,
    /// The listener's certificate when it speaks HTTPS (`tls.*`).
    tls: Option<http::tls::Certificate>,
    /// This process among the nodes on the database.
    node: crate::nodes::Node,
    state: AppState,
    /// What the background work of this node (jobs, list refreshes) is configured with.
    settings: Settings,
    /// Credentials of the sandbox partner made on this first start, if this node made it.
    pub bootstrap: Option<IssuedCredentials>,
}

/// Connects and migrates: the first thing every command that touches the database does.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(&settings.database_url, &settings.db)
        .await
        .with_context(|| format!("cannot open the database ({})", redact_url(&settings.database_url)))?;
    store.migrate().await.context("cannot apply database migrations")?;
    Ok(store)
}

/// The URL without its password, for error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // First, so what start-up measures (the sanctions list loaded or not) is recorded.
        let metrics = http::ops::prometheus();
        let store = open_store(&settings).await?;
        let node = crate::nodes::Node::start(&store).await.context("cannot register this node")?;
        let bootstrap = crate::core::partners::bootstrap_sandbox(&store, now_ms()).await?;
        let kek = Arc::new(crate::kek::Kek::from_settings(&settings.secrets)?);
        // Signing keys stored before sealing existed are sealed now; moving values to a new KEK
        // is `onboard keys rewrap`, run once every node has it (a node still on the old KEK
        // could not open what the new one seals).
        let rewrap = crate::core::staff::Rewrap::Unsealed;
        let resealed = crate::core::staff::rewrap_secrets(&store, Arc::clone(&kek), rewrap, "system:startup", now_ms())
            .await
            .context("cannot reseal stored secrets under the current key-encryption key")?;
        if resealed > 0 {
            tracing::info!(resealed, kek = %kek.current_id(), "stored secrets resealed under the current KEK");
        }
        let keys = KeyRing::load(store.clone(), settings.auth.issuer.clone(), Arc::clone(&kek), now_ms())
            .await
            .context("cannot load signing keys")?;
        let sanctions = load_sanctions(&store, &settings).await;
        // The strength estimator builds its dictionaries on first use (~20 ms); pay that here,
        // not on a request-serving thread during the first sign-up.
        let _ = crate::domain::signup::Password::parse("Warm-up#2026x", &[]);
        let passwords = crate::auth::passwords::PasswordHasher::start(&settings.password)
            .context("cannot start the password hashing threads")?;
        let mailer = crate::mail::Mailer::new(&settings.mail).map_err(anyhow::Error::msg).context("mail settings")?;
        if !kek.is_configured() {
            tracing::warn!(
                "no key-encryption key configured (secrets.kek_file or ONBOARD_SECRETS__KEK): secrets are sealed \
                 under the built-in development key, and live partners cannot be given provider secrets"
            );
        }
        let waker = crate::jobs::JobWaker::default();
        let webhooks = crate::webhooks::Webhooks::new(store.clone(), Arc::clone(&kek), settings.webhooks.clone())
            .map_err(|e| anyhow::anyhow!(e))
            .context("webhook settings")?;
        let payments = crate::payments::Payments::new(settings.payments.clone(), Arc::clone(&kek))
            .map_err(|e| anyhow::anyhow!(e))
            .context("payment settings")?;
        let sms = crate::sms::Sms::new(&settings.sms).map_err(anyhow::Error::msg).context("SMS settings")?;
        let kyc = crate::kyc::Kyc::new(store.clone(), kek, settings.kyc.clone(), waker.clone())
            .map_err(|e| anyhow::anyhow!(e))
            .context("KYC settings")?;
        let tls = match settings.tls.enabled() {
            true => Some(http::tls::Certificate::load(&settings.tls).await.with_context(|| {
                format!("cannot load the TLS certificate ({}, {})", settings.tls.cert_file, settings.tls.key_file)
            })?),
            false => None,
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let state = AppState::new(AppInner {
            users: UserWriter::spawn(store.clone(), &settings.db),
            registrations: crate::store::RecentRegistrations::new(settings.db.recent_registrations),
            store,
            keys: Arc::new(keys),
            verified_tokens: Default::default(),
            verified_api_keys: Default::default(),
            metrics,
            sanctions,
            jobs: waker,
            kyc,
            webhooks,
            payments,
            passwords,
            mailer,
            sms,
            node: node.id.as_str().into(),
            signup_limits: http::limits::SignupLimits::new(&settings.signup),
            settings: http::HttpConfig {
                http: settings.http.clone(),
                auth: settings.auth.clone(),
                idempotency: settings.idempotency.clone(),
                signup: settings.signup.clone(),
                consents: settings.consents.clone(),
                console: settings.console.clone(),
                tls: settings.tls.enabled(),
                strict_transport_security: settings.tls.strict_transport_security(),
            },
        });
        Ok(Self { listener, tls, node, state, settings, bootstrap })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// `https` when the listener speaks TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
    /// (at most `http.shutdown_grace_secs`) and closes the database.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let Self { listener, tls, node, state, settings, .. } = self;
        // The TLS server is set up before any background task starts: a failure here leaves
        // nothing running.
        let listener = match tls {
            None => Listener::Plain(listener),
            Some(certificate) => {
                let server = axum_server::from_tcp_rustls(listener.into_std()?, certificate.rustls())?;
                Listener::Tls(Box::new((server, certificate)))
            }
        };
        let grace = Duration::from_secs(state.settings.http.shutdown_grace_secs);
        let reloader = tokio::spawn(reload_keys_periodically(Arc::clone(&state.keys)));
        let purger = tokio::spawn(purge_idempotency_keys_periodically(state.store.clone()));
        let refresh = Duration::from_secs(settings.sanctions.refresh_secs.max(1));
        let refresher = tokio::spawn(refresh_sanctions_periodically(state.clone(), refresh));
        let forgetter = tokio::spawn(forget_full_rate_limit_buckets(state.clone()));
        let jobs = settings
            .jobs
            .enabled
            .then(|| job_registry(&state, &settings).start(state.store.clone(), settings.jobs.clone(), &node.id));
        let (watching_tx, watching_rx) = tokio::sync::watch::channel(false);
        let watcher = tokio::spawn(node.clone().watch(state.store.clone(), settings.node.clone(), watching_rx));
        let renewals = settings.jobs.enabled.then(|| tokio::spawn(renew_subscriptions_periodically(state.clone())));
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight requests");
            let _ = stopping_tx.send(());
        };
        let store = state.store.clone();
        // The peer address feeds the per-IP limits of the public routes.
        let service =
            http::router_with(state, crate::console::router()).into_make_service_with_connect_info::<SocketAddr>();
        let (server, reload): (std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>, _) = match listener
        {
            Listener::Plain(plain) => {
                (Box::pin(axum::serve(plain, service).with_graceful_shutdown(signal).into_future()), None)
            }
            Listener::Tls(tls) => {
                let (server, certificate) = *tls;
                let handle = axum_server::Handle::new();
                let stopper = handle.clone();
                tokio::spawn(async move {
                    signal.await;
                    stopper.graceful_shutdown(Some(grace));
                });
                let reload = tokio::spawn(certificate.reload_on_change());
                (Box::pin(server.handle(handle).serve(service)), Some(reload))
            }
        };
        let deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            result = server => result,
            () = deadline => {
                tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace period over; closing remaining connections");
                Ok(())
            }
        };
        reloader.abort();
        if let Some(reload) = reload {
            reload.abort();
        }
        purger.abort();
        refresher.abort();
        forgetter.abort();
        if let Some(renewals) = renewals {
            renewals.abort();
        }
        if let Some(jobs) = jobs {
            jobs.shutdown(grace).await;
        }
        let _ = watching_tx.send(true);
        let _ = watcher.await;
        node.stop(&store).await;
        store.close().await;
        result
    }
}

/// What `run_until` serves on: the bound socket, or the TLS server made from it.
enum Listener {
    Plain(TcpListener),
    Tls(Box<(axum_server::Server<SocketAddr, axum_server::tls_rustls::RustlsAcceptor>, http::tls::Certificate)>),
}

/// The handlers this node runs.
fn job_registry(state: &AppState, settings: &Settings) -> JobRegistry {
    let mut registry = JobRegistry::with_waker(state.jobs.clone());
    crate::cip::register(&mut registry, &state.store, &state.sanctions, &state.jobs, settings.cip.concurrency);
    crate::mail::register(&mut registry, &state.store, &state.mailer, settings.mail.concurrency);
    crate::sms::register(&mut registry, &state.store, &state.sms, settings.mail.concurrency);
    state.kyc.register_jobs(&mut registry, settings.cip.concurrency);
    state.webhooks.register_jobs(&mut registry);
    let (sanctions, store) = (state.sanctions.clone(), state.store.clone());
    // More threads than cores only adds switching.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = match settings.sanctions.rescreen_threads {
        0 => cores.saturating_sub(1).max(1),
        n => n.min(cores),
    };
    registry.register(sanctions::RESCREEN_JOB, 1, move |job| {
        let (sanctions, store) = (sanctions.clone(), store.clone());
        async move {
            match sanctions.rescreen_page(&store, &job, threads).await {
                Ok(_) => JobOutcome::Committed,
                Err(SanctionsError::Invalid(e)) => JobOutcome::Fail(e.to_string()),
                Err(e) => JobOutcome::Retry(e.to_string()),
            }
        }
    });
    registry
}

/// The list to screen with: the database's newest; on a fresh install the list in
/// `sanctions.autoload_dir` when one is set, else the snapshot built into the binary (so `serve`
/// screens from any working directory). Screening is unavailable (503, `/readyz` says so) rather
/// than start-up failing when none can be loaded.
async fn load_sanctions(store: &Store, settings: &Settings) -> Sanctions {
    let sanctions = Sanctions::new(settings.sanctions.policy);
    match sanctions.refresh(store).await {
        Ok(loaded) if !loaded.is_empty() => return sanctions,
        Ok(_) => {}
        Err(err) => {
            tracing::warn!(error = %err, "cannot load the sanctions list; screening is unavailable");
            return sanctions;
        }
    }
    let configured = &settings.sanctions.autoload_dir;
    let publication = if !configured.is_empty() {
        sanctions::Publication::from_dir(std::path::Path::new(configured), sanctions::ListSource::OfacSdn)
    } else if settings.sanctions.builtin_snapshot {
        sanctions::builtin()
    } else {
        tracing::warn!("no sanctions list loaded; run `onboard sanctions load`");
        return sanctions;
    };
    match async { sanctions.install(store, publication?).await }.await {
        Ok((version, _)) => {
            tracing::info!(list = version.id, source = %version.source, "sanctions list loaded on first start")
        }
        Err(err) => tracing::warn!(error = %err, "cannot load the sanctions list; screening is unavailable"),
    }
    sanctions
}

/// Picks up list versions loaded by another node or by `onboard sanctions load`.
async fn refresh_sanctions_periodically(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(err) = state.sanctions.refresh(&state.store).await {
            tracing::warn!(error = %err, "sanctions list refresh failed; keeping the loaded list");
        }
    }
}

/// Rate-limit buckets that have refilled are dropped once a minute, so memory follows the
/// number of recently active clients, not of every client ever seen.
async fn forget_full_rate_limit_buckets(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.signup_limits.retain_recent();
    }
}

async fn reload_keys_periodically(keys: Arc<KeyRing>) {
    let mut tick = tokio::time::interval(KEY_RELOAD_INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(err) = keys.reload(now_ms()).await {
            tracing::warn!(error = ?err, "signing key reload failed; keeping the keys in memory");
        }
    }
}

/// Idempotency records past their retention are deleted in the background, a few minutes apart;
/// until then an expired record is ignored (and replaced) by the claim itself.
async fn purge_idempotency_keys_periodically(store: Store) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tick.tick().await;
        match store.purge_expired_idempotency_keys(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "expired idempotency keys purged"),
            Err(err) => tracing::warn!(error = ?err, "idempotency key purge failed"),
        }
    }
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM from the moment it is called, and returns a future
/// that resolves on the first of them. Registering before the server logs "listening" matters:
/// a signal that came between that line and the server's first poll of a lazily registered
/// handler killed the process with the default action (exit 143, no drain).
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// The subscription renewal sweep (`core::billing::renew_due`) every `payments.renewal_sweep_secs`
/// on every node that runs workers; the rows' claims make each charge once across nodes.
async fn renew_subscriptions_periodically(state: AppState) {
    let every = Duration::from_secs(state.payments.settings.renewal_sweep_secs.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match crate::core::billing::renew_due(&state.store, &state.payments, crate::domain::now_ms()).await {
            Ok(report) if report != Default::default() => {
                tracing::info!(?report, "subscription renewals");
                metrics::counter!("billing_renewal_charges_total", "result" => "paid").increment(report.charged as u64);
                metrics::counter!("billing_renewal_charges_total", "result" => "declined")
                    .increment(report.failed as u64);
                metrics::counter!("billing_subscriptions_canceled_total").increment(report.canceled as u64);
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "the renewal sweep failed; it runs again"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(super::redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact_url("sqlite://onboard.db"), "sqlite://onboard.db");
    }
}
