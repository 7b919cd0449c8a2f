//! `onboard plans …`: a partner's subscription tiers from the command line, through the same
//! use cases as the operator routes (audited with the CLI's actor).

use anyhow::Context;

use super::staff::{cli_actor, with_store};
use crate::config::Settings;
use crate::core::billing::{self, NewTier, Tier};
use crate::domain::billing::{Interval, PlanId};
use crate::domain::money::{Currency, Money};
use crate::domain::{PartnerId, now_ms};

#[derive(clap::Subcommand)]
pub enum PlansCommand {
    /// Create a tier; prints its `subscriptionDetailsId` (the whole tier with `--json`).
    Create {
        #[arg(long)]
        partner: PartnerId,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// The price per interval in minor units of the currency (999 USD is $9.99).
        #[arg(long)]
        price: i64,
        /// ISO 4217 (USD, MXN, JPY, KWD…).
        #[arg(long)]
        currency: String,
        /// `month` or `year`.
        #[arg(long)]
        interval: String,
        #[arg(long, default_value_t = 0)]
        trial_days: u32,
        #[arg(long)]
        json: bool,
    },
    /// List the partner's tiers (archived ones with `--archived`).
    List {
        #[arg(long)]
        partner: PartnerId,
        #[arg(long)]
        archived: bool,
        #[arg(long)]
        json: bool,
    },
    /// Stop offering a tier; its subscriptions go on.
    Archive {
        #[arg(long)]
        partner: PartnerId,
        /// The tier's `subscriptionDetailsId` (`plan:<uuid>`).
        plan: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: Settings, command: PlansCommand) -> anyhow::Result<()> {
    with_store(&settings, |store| async move {
        let now = now_ms();
        match command {
            PlansCommand::Create { partner, name, description, price, currency, interval, trial_days, json } => {
                let currency = Currency::parse(&currency).map_err(|e| anyhow::anyhow!("--currency {e}"))?;
                let price = Money::new(price, currency).map_err(|e| anyhow::anyhow!("--price {e}"))?;
                let interval = Interval::parse(&interval)
                    .with_context(|| format!("--interval must be one of {}", Interval::NAMES))?;
                let tier = NewTier { name, description, price, interval, trial_days };
                let created = billing::create_tier(&store, partner, tier, &cli_actor(), now).await?;
                if json {
                    println!("{}", serde_json::to_string(&created)?);
                } else {
                    println!("{}", created.subscription_details_id);
                }
            }
            PlansCommand::List { partner, archived, json } => {
                let tiers = billing::tiers(&store, partner, archived).await?;
                if json {
                    println!("{}", serde_json::to_string(&tiers)?);
                } else {
                    tiers.iter().for_each(print_tier);
                }
            }
            PlansCommand::Archive { partner, plan, json } => {
                let plan: PlanId = plan.parse().map_err(|e| anyhow::anyhow!("the tier id {e}"))?;
                let tier = billing::archive_tier(&store, partner, plan.as_str(), &cli_actor(), now).await?;
                if json {
                    println!("{}", serde_json::to_string(&tier)?);
                } else {
                    print_tier(&tier);
                }
            }
        }
        Ok(())
    })
    .await
}

fn print_tier(t: &Tier) {
    let trial = if t.trial_days > 0 { format!(", {}-day trial", t.trial_days) } else { String::new() };
    let archived = t.archived_at.as_deref().map(|at| format!("  (archived {at})")).unwrap_or_default();
    println!(
        "{}  {}  {} {} per {}{trial}{archived}",
        t.subscription_details_id, t.name, t.amount_decimal, t.currency, t.interval
    );
}

/// `onboard partner payments`: a partner's payment provider. Secrets come from the environment
/// (or flags), never echoed: `STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET`.
#[derive(clap::Args)]
pub struct PaymentsArgs {
    #[arg(long)]
    partner: PartnerId,
    /// `stripe`, or `sandbox` (sandbox partners only; their default without settings).
    #[arg(long, default_value = "stripe")]
    provider: String,
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
}

pub async fn configure_payments(
    store: &crate::store::Store,
    secrets: &crate::kek::SecretsSettings,
    args: PaymentsArgs,
) -> anyhow::Result<()> {
    let kek = crate::kek::Kek::from_settings(secrets)?;
    let partner = store.find_partner(args.partner).await?.with_context(|| format!("no partner {}", args.partner))?;
    let provider = match args.provider.as_str() {
        "stripe" => "stripe",
        "sandbox" => "sandbox",
        _ => anyhow::bail!("--provider must be one of stripe, sandbox"),
    };
    let secret = |value: Option<String>| value.filter(|v| !v.is_empty()).map(secrecy::SecretString::from);
    let config = billing::PaymentsConfig {
        provider,
        secret_key: secret(args.secret_key),
        webhook_secret: secret(args.webhook_secret),
    };
    billing::configure_payments(store, &kek, &partner, config, &cli_actor(), now_ms()).await?;
    println!("payment settings of partner {} saved (secrets sealed under KEK {})", partner.id, kek.current_id());
    Ok(())
}
