//! `onboard partner kyc` and `onboard keys rewrap`: a partner's identity verification settings
//! and resealing stored secrets, through the same core functions as the operator routes.

use std::sync::Arc;

use anyhow::Context;
use secrecy::SecretString;

use super::staff::{cli_actor, with_store};
use crate::config::Settings;
use crate::core;
use crate::core::kyc::KycConfig;
use crate::domain::kyc::ProviderKind;
use crate::domain::{PartnerId, now_ms};
use crate::kek::{Kek, SecretsSettings};
use crate::store::Store;

/// Secrets come from the environment (or flags), never echoed: `SUMSUB_APP_TOKEN`,
/// `SUMSUB_SECRET_KEY`, `SUMSUB_WEBHOOK_SECRET`.
#[derive(clap::Args)]
pub struct KycArgs {
    #[arg(long)]
    partner: PartnerId,
    /// `sumsub`, or `sandbox` (the built-in simulation; sandbox partners only).
    #[arg(long, default_value = "sumsub")]
    provider: String,
    /// The Sumsub level applicants verify at (case-sensitive).
    #[arg(long)]
    level_name: String,
    /// Require a passed KYC review of the partner's seed-002 prospects too (seed-003 users always).
    #[arg(long)]
    required_for_prospects: bool,
    #[arg(long, env = "SUMSUB_APP_TOKEN", hide_env_values = true)]
    app_token: Option<String>,
    #[arg(long, env = "SUMSUB_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    #[arg(long, env = "SUMSUB_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
}

pub async fn configure(store: &Store, secrets: &SecretsSettings, args: KycArgs) -> anyhow::Result<()> {
    let kek = Kek::from_settings(secrets)?;
    let partner = store.find_partner(args.partner).await?.with_context(|| format!("no partner {}", args.partner))?;
    let provider = ProviderKind::parse(&args.provider)
        .with_context(|| format!("--provider must be one of {}", ProviderKind::NAMES))?;
    let secret = |value: Option<String>| value.filter(|v| !v.is_empty()).map(SecretString::from);
    let config = KycConfig {
        provider,
        level_name: args.level_name,
        required_for_prospects: args.required_for_prospects,
        app_token: secret(args.app_token),
        secret_key: secret(args.secret_key),
        webhook_secret: secret(args.webhook_secret),
    };
    core::kyc::configure(store, &kek, &partner, config, &cli_actor(), now_ms()).await?;
    println!("KYC settings of partner {} saved (secrets sealed under KEK {})", partner.id, kek.current_id());
    Ok(())
}

pub async fn rewrap(settings: &Settings) -> anyhow::Result<()> {
    let kek = Arc::new(Kek::from_settings(&settings.secrets)?);
    if !kek.is_configured() {
        anyhow::bail!("no key-encryption key is configured (secrets.kek or secrets.kek_file): nothing to rewrap to");
    }
    with_store(settings, |store| async move {
        let count =
            core::staff::rewrap_secrets(&store, Arc::clone(&kek), core::staff::Rewrap::All, &cli_actor(), now_ms())
                .await?;
        println!("{count} secrets resealed under KEK {}", kek.current_id());
        Ok(())
    })
    .await
}
