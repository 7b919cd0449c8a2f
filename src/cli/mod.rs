//! The `onboard` command line: parse, load settings, dispatch.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::auth::credentials::IssuedCredentials;
use crate::config::Settings;
use crate::core;
use crate::domain::sanctions_list::ListSelection;
use crate::domain::{Environment, PartnerId, PartnerName, now_ms};
use crate::startup::{self, Application, open_store};
use crate::store::Store;
use crate::telemetry;

mod kyc;
mod plans;
mod sanctions;
mod staff;
mod webhooks;

#[derive(Parser)]
#[command(name = "onboard", version, about = "Partner user registration and onboarding service")]
pub struct Cli {
    /// Settings file (default: ./onboard.toml when it exists).
    #[arg(long, global = true, env = "ONBOARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (migrates first; creates a sandbox partner on an empty database).
    Serve {
        /// Address to listen on, e.g. 0.0.0.0:8080.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage partners and their credentials.
    Partner {
        #[command(subcommand)]
        command: PartnerCommand,
    },
    /// Manage the keys that sign access tokens.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Sanctions lists and screening.
    Sanctions {
        #[command(subcommand)]
        command: sanctions::SanctionsCommand,
    },
    /// Staff access: admin tokens for compliance reviewers and operators.
    Admin {
        #[command(subcommand)]
        command: staff::AdminCommand,
    },
    /// Compliance cases: possible sanctions matches waiting for a reviewer.
    Compliance {
        #[command(subcommand)]
        command: staff::ComplianceCommand,
    },
    /// Background jobs: inspect the queue, retry dead-lettered jobs.
    Jobs {
        #[command(subcommand)]
        command: staff::JobsCommand,
    },
    /// A partner's subscription tiers (seed 003 step 4).
    Plans {
        #[command(subcommand)]
        command: plans::PlansCommand,
    },
    /// A partner's webhook endpoints.
    Webhooks {
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
}

#[derive(Subcommand)]
enum PartnerCommand {
    /// Create a partner with an API key and an OAuth client (secrets are shown only now).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "sandbox")]
        environment: Environment,
        #[arg(long)]
        json: bool,
    },
    /// List partners.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Issue a new API key; the old ones stay valid for `--grace` (e.g. 24h), default none.
    RotateKey {
        #[arg(long)]
        partner: PartnerId,
        #[arg(long, default_value = "0s")]
        grace: humantime::Duration,
        #[arg(long)]
        json: bool,
    },
    /// Set the partner's identity verification (KYC) provider, level and secrets.
    Kyc(kyc::KycArgs),
    /// Set the partner's payment provider (Stripe) and its secrets.
    Payments(plans::PaymentsArgs),
    /// Choose the sanctions lists the partner's users are screened against.
    SanctionsLists {
        #[arg(long)]
        partner: PartnerId,
        /// Comma-separated: ofac-sdn, ofac-cons, un, eu, uk.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        lists: Option<String>,
        /// Every list loaded (the default of a new partner).
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Start signing with a new key; the old one verifies until the tokens it signed expire.
    Rotate,
    /// Reseal every stored secret under the current key-encryption key (after changing
    /// `secrets.kek`, with the old one in `secrets.previous_keks`).
    Rewrap,
    /// Print a new random key-encryption key (base64) for `secrets.kek` or `secrets.kek_file`.
    GenerateKek,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Command::Serve { listen: Some(addr) } = &cli.command {
        settings.listen = *addr;
    }
    let _log_guard = telemetry::init(&settings.log);
    match cli.command {
        Command::Serve { .. } => serve(settings).await,
        Command::Migrate => {
            open_store(&settings).await?.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Partner { command } => partner(settings, command).await,
        Command::Sanctions { command } => sanctions::run(settings, command).await,
        Command::Admin { command } => staff::admin(settings, command).await,
        Command::Jobs { command } => staff::jobs(settings, command).await,
        Command::Webhooks { command } => webhooks::run(settings, command).await,
        Command::Plans { command } => plans::run(settings, command).await,
        Command::Compliance { command } => staff::compliance(settings, command).await,
        Command::Keys { command: KeysCommand::Rotate } => {
            let store = open_store(&settings).await?;
            let kek = crate::kek::Kek::from_settings(&settings.secrets)?;
            let window = Duration::from_secs(settings.auth.access_token_ttl_secs) + startup::KEY_RELOAD_INTERVAL * 2;
            let kid = core::staff::rotate_signing_key(&store, &kek, window, &staff::cli_actor(), now_ms()).await?;
            store.close().await;
            println!(
                "new signing key {kid}; the previous key verifies for another {}",
                humantime::format_duration(window)
            );
            Ok(())
        }
        Command::Keys { command: KeysCommand::Rewrap } => kyc::rewrap(&settings).await,
        Command::Keys { command: KeysCommand::GenerateKek } => {
            println!("{}", crate::kek::generate());
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let (addr, scheme) = (app.local_addr(), app.scheme());
    if let Some(credentials) = &app.bootstrap {
        print_bootstrap_banner(credentials, &format!("{scheme}://{addr}"));
    }
    let shutdown = startup::shutdown_signal().context("cannot listen for SIGINT/SIGTERM")?;
    tracing::info!(%addr, scheme, backend = ?app.state().store.kind(), "listening");
    app.run_until(shutdown).await.context("server error")?;
    tracing::info!("stopped");
    Ok(())
}

fn print_bootstrap_banner(c: &IssuedCredentials, base: &str) {
    println!(
        "\nSandbox partner created (shown once; store these now):\n\
         \n  partner id     {}\n  API key        {}\n  client id      {}\n  client secret  {}\n\
         \nTry it:\n\
         \n  curl -s -u '{}:{}' -d grant_type=client_credentials {base}/oauth/token\
         \n  curl -s -H 'PartnerApiKey: {}' {base}/partner\n",
        c.partner_id, c.api_key, c.client_id, c.client_secret, c.client_id, c.client_secret, c.api_key
    );
}

async fn partner(settings: Settings, command: PartnerCommand) -> anyhow::Result<()> {
    let secrets = settings.secrets.clone();
    staff::with_store(&settings, |store| async move {
        match command {
            PartnerCommand::Create { name, environment, json } => {
                let name = PartnerName::parse(&name).context("--name")?;
                let issued = core::partners::create(&store, &name, environment, &staff::cli_actor(), now_ms()).await?;
                if json {
                    println!("{}", serde_json::to_string(&issued)?);
                } else {
                    let IssuedCredentials { partner_id, api_key, client_id, client_secret, .. } = &issued;
                    let env = environment.as_str();
                    println!(
                        "partner {partner_id} ({env}) created\n  API key        {api_key}\n  client id      {client_id}\n  client secret  {client_secret}\n(secrets are shown only now)"
                    );
                }
            }
            PartnerCommand::List { json } => list_partners(&store, json).await?,
            PartnerCommand::RotateKey { partner, grace, json } => rotate_key(&store, partner, grace, json).await?,
            PartnerCommand::Kyc(args) => kyc::configure(&store, &secrets, args).await?,
            PartnerCommand::Payments(args) => plans::configure_payments(&store, &secrets, args).await?,
            PartnerCommand::SanctionsLists { partner, lists, all: _ } => {
                let lists = lists.as_deref().map(ListSelection::parse).transpose().context("--lists")?;
                // A list chosen but never loaded would fail every sanctions check of the
                // partner's users until it is: load it first.
                let loaded = store.current_sanctions_lists().await?;
                if let Some(missing) = lists.as_ref().and_then(|s| s.missing(loaded.iter().map(|v| v.list))) {
                    anyhow::bail!("{missing} not loaded; load it first (onboard sanctions load --source …)");
                }
                let actor = staff::cli_actor();
                if !core::partners::set_sanctions_lists(&store, partner, lists.as_ref(), &actor, now_ms()).await? {
                    anyhow::bail!("no partner {partner}");
                }
                let chosen = lists.map_or_else(|| "every list loaded".to_owned(), |l| l.to_string());
                println!("partner {partner} is screened against {chosen}");
            }
        }
        Ok(())
    })
    .await
}

async fn list_partners(store: &Store, json: bool) -> anyhow::Result<()> {
    let partners = store.list_partners().await?;
    if json {
        println!("{}", serde_json::to_string(&partners)?);
        return Ok(());
    }
    println!("{:>10}  {:<8}  name", "id", "env");
    for p in partners {
        println!("{:>10}  {:<8}  {}", p.id, p.environment.as_str(), p.name);
    }
    Ok(())
}

async fn rotate_key(store: &Store, partner: PartnerId, grace: humantime::Duration, json: bool) -> anyhow::Result<()> {
    let found = store.find_partner(partner).await?.with_context(|| format!("no partner {partner}"))?;
    let rotated = core::partners::rotate_api_key(store, &found, grace.into(), &staff::cli_actor(), now_ms())
        .await?
        .with_context(|| format!("no partner {partner}"))?;
    let secret = secrecy::ExposeSecret::expose_secret(&rotated.api_key).to_owned();
    if json {
        let answer = serde_json::json!({"partnerId": partner.get(), "apiKey": secret, "previousKeysValidFor": grace.to_string()});
        println!("{answer}");
    } else {
        println!("new API key for partner {partner}: {secret}\nprevious keys stay valid for {grace}");
    }
    Ok(())
}
