//! `onboard webhooks …`: a partner's webhook endpoints from the command line, through the same
//! use cases as `/partner/webhooks` (audited as the partner's own changes would be).

use anyhow::Context;

use super::staff::with_store;
use crate::config::Settings;
use crate::core::webhooks::{self as usecase, Endpoint, EndpointPatch, NewEndpointRequest};
use crate::domain::{PartnerId, now_ms};
use crate::kek::Kek;

#[derive(clap::Subcommand)]
pub enum WebhooksCommand {
    /// Add an endpoint; prints its signing secret (shown only now).
    Create {
        #[arg(long)]
        partner: PartnerId,
        #[arg(long)]
        url: String,
        /// Event types, comma-separated (default: every type).
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List the partner's endpoints.
    List {
        #[arg(long)]
        partner: PartnerId,
    },
    /// Turn an endpoint on or off.
    Enable {
        #[arg(long)]
        partner: PartnerId,
        endpoint: String,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        enabled: bool,
    },
    /// Delete an endpoint.
    Delete {
        #[arg(long)]
        partner: PartnerId,
        endpoint: String,
    },
    /// A new signing secret; the old one signs beside it for 24 hours.
    RotateSecret {
        #[arg(long)]
        partner: PartnerId,
        endpoint: String,
    },
    /// Send a `webhook.test` event to the endpoint.
    Test {
        #[arg(long)]
        partner: PartnerId,
        endpoint: String,
    },
    /// Queue again every dead-lettered delivery of events since a time (RFC 3339).
    ReplayFailed {
        #[arg(long)]
        partner: PartnerId,
        #[arg(long)]
        since: String,
    },
}

pub async fn run(settings: Settings, command: WebhooksCommand) -> anyhow::Result<()> {
    let kek = Kek::from_settings(&settings.secrets)?;
    let allow_loopback = settings.webhooks.allow_loopback;
    with_store(&settings, |store| async move {
        let partner_of = |id: PartnerId| {
            let store = store.clone();
            async move { store.find_partner(id).await?.with_context(|| format!("no partner {id}")) }
        };
        let now = now_ms();
        match command {
            WebhooksCommand::Create { partner, url, events, description } => {
                let partner = partner_of(partner).await?;
                let request =
                    NewEndpointRequest { url: &url, events: events.as_deref(), description: description.as_deref() };
                let created = usecase::create_endpoint(&store, &kek, &partner, request, allow_loopback, now).await?;
                print_endpoint(&created.endpoint);
                println!("  secret   {}\n(the secret is shown only now)", created.secret.expose());
            }
            WebhooksCommand::List { partner } => {
                for record in store.webhook_endpoints(partner.get()).await? {
                    print_endpoint(&Endpoint::of(&record, now));
                }
            }
            WebhooksCommand::Enable { partner, endpoint, enabled } => {
                let partner = partner_of(partner).await?;
                let patch = EndpointPatch { enabled: Some(enabled), ..EndpointPatch::default() };
                print_endpoint(
                    &usecase::update_endpoint(&store, &partner, &endpoint, patch, allow_loopback, now).await?,
                );
            }
            WebhooksCommand::Delete { partner, endpoint } => {
                usecase::delete_endpoint(&store, &partner_of(partner).await?, &endpoint, now).await?;
                println!("{endpoint} deleted");
            }
            WebhooksCommand::RotateSecret { partner, endpoint } => {
                let partner = partner_of(partner).await?;
                let (endpoint, secret) = usecase::rotate_secret(&store, &kek, &partner, &endpoint, now).await?;
                print_endpoint(&endpoint);
                println!("  secret   {}\n(the previous secret signs beside it for 24 hours)", secret.expose());
            }
            WebhooksCommand::Test { partner, endpoint } => {
                let event = usecase::send_test(&store, &partner_of(partner).await?, &endpoint, now).await?;
                println!("test event {event} queued for {endpoint}");
            }
            WebhooksCommand::ReplayFailed { partner, since } => {
                let since = time::OffsetDateTime::parse(&since, &time::format_description::well_known::Rfc3339)
                    .context("--since must be an RFC 3339 date-time")?;
                let since = (since.unix_timestamp_nanos() / 1_000_000) as i64;
                let queued = usecase::replay_failed(&store, &partner_of(partner).await?, since, now).await?;
                println!("{queued} deliveries queued again");
            }
        }
        Ok(())
    })
    .await
}

fn print_endpoint(e: &Endpoint) {
    let state = if e.enabled {
        "enabled".to_owned()
    } else {
        format!("disabled: {}", e.disabled_reason.as_deref().unwrap_or(""))
    };
    println!("{}  {}  [{}]  {state}", e.id, e.url, e.events.join(","));
}
