//! `onboard admin …` (staff tokens) and `onboard jobs …` (the job queue), for operators.

use anyhow::{Context, bail};
use clap::Subcommand;
use secrecy::ExposeSecret;

use crate::auth::staff::{NewStaffToken, StaffRole};
use crate::config::Settings;
use crate::core::{self, onboarding::CaseDecision, onboarding::MoveError};
use crate::domain::now_ms;
use crate::startup::open_store;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Staff tokens (shown once, stored hashed, revocable).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The most recent audit log entries.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token for a named person or system; it is printed once.
    Create {
        /// Who holds it (written to the audit log with every action).
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: StaffRole,
        #[arg(long)]
        json: bool,
    },
    List,
    Revoke {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Queue depth per kind.
    Stats,
    /// Jobs, optionally of one kind and state (queued, running, done, dead).
    List {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Put a dead-lettered job back in the queue with fresh attempts.
    Retry { id: i64 },
}

#[derive(Subcommand)]
pub enum ComplianceCommand {
    /// Open cases (users in UpgradePending/Compliance), oldest first.
    List {
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Clear a case: the user goes back on track.
    Clear {
        user_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Block a case: UpgradeFailed/ComplianceBlocked.
    Block {
        user_id: String,
        #[arg(long)]
        reason: String,
    },
}

/// Who ran a CLI command, for the audit log.
pub(super) fn cli_actor() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

pub async fn admin(settings: Settings, command: AdminCommand) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let result = async {
        match command {
            AdminCommand::Token { command: TokenCommand::Create { name, role, json } } => {
                let name = name.trim();
                if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
                    bail!("--name must be 1-200 printable characters");
                }
                let token = NewStaffToken::generate();
                core::staff::create_token(&store, name, role, &token, &cli_actor(), now_ms())
                    .await
                    .with_context(|| format!("cannot create a token named {name:?} (names are unique)"))?;
                let secret = token.token.expose_secret();
                if json {
                    println!("{}", serde_json::json!({ "name": name, "role": role, "token": secret }));
                } else {
                    println!("{role} token for {name} (shown only now):\n  {secret}");
                }
            }
            AdminCommand::Token { command: TokenCommand::List } => {
                println!("{:<24} {:<11} {:<25} revoked", "name", "role", "created");
                for t in store.list_staff_tokens().await? {
                    let revoked = t.revoked_at.map(crate::http::rfc3339).unwrap_or_default();
                    println!(
                        "{:<24} {:<11} {:<25} {revoked}",
                        t.name,
                        t.role.as_str(),
                        crate::http::rfc3339(t.created_at)
                    );
                }
            }
            AdminCommand::Token { command: TokenCommand::Revoke { name } } => {
                if !core::staff::revoke_token(&store, &name, &cli_actor(), now_ms()).await? {
                    bail!("no live token named {name:?}");
                }
                println!("token {name:?} revoked");
            }
            AdminCommand::Audit { limit } => {
                for e in store.audit_log(limit).await? {
                    println!(
                        "{} {:<24} {:<28} {:<24} {}",
                        crate::http::rfc3339(e.at),
                        e.actor,
                        e.action,
                        e.target.unwrap_or_default(),
                        e.detail
                    );
                }
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}

pub async fn jobs(settings: Settings, command: JobsCommand) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let result = async {
        match command {
            JobsCommand::Stats => {
                println!("{:<24} {:>8} {:>8} {:>8}  oldest due", "kind", "queued", "running", "dead");
                for s in store.queue_stats(now_ms()).await? {
                    let oldest = s.oldest_due.map(crate::http::rfc3339).unwrap_or_default();
                    println!("{:<24} {:>8} {:>8} {:>8}  {oldest}", s.kind, s.queued, s.running, s.dead);
                }
            }
            JobsCommand::List { kind, state, limit } => {
                for j in store.list_jobs(kind.as_deref(), state.as_deref(), limit).await? {
                    println!(
                        "{:>8} {:<24} {:<8} attempts {:>2}  {}",
                        j.id,
                        j.kind,
                        j.state,
                        j.attempts,
                        j.last_error.unwrap_or_default()
                    );
                }
            }
            JobsCommand::Retry { id } => {
                if !core::staff::retry_job(&store, id, &cli_actor(), now_ms()).await? {
                    bail!("job {id} is not dead-lettered");
                }
                println!("job {id} queued again");
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}

pub async fn compliance(settings: Settings, command: ComplianceCommand) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let result = async {
        match command {
            ComplianceCommand::List { after, limit, json } => {
                let cases = store.compliance_cases(after, limit.clamp(1, 1000)).await?;
                for case in cases {
                    if json {
                        println!("{}", serde_json::to_string(&case)?);
                        continue;
                    }
                    let name = [&case.first_name, &case.middle_name, &case.last_name, &case.second_last_name]
                        .into_iter()
                        .flatten()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(" ");
                    println!(
                        "{:>8} {} partner {:<4} {:<40} dob {:<10} {:<2} score {:.3}",
                        case.id,
                        case.public_id,
                        case.partner_id,
                        name,
                        case.date_of_birth.as_deref().unwrap_or("-"),
                        case.country.as_deref().unwrap_or("-"),
                        case.top_score.unwrap_or_default()
                    );
                }
            }
            ComplianceCommand::Clear { user_id, reason } => decide_case(&store, &user_id, &reason, true).await?,
            ComplianceCommand::Block { user_id, reason } => decide_case(&store, &user_id, &reason, false).await?,
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}

async fn decide_case(store: &crate::store::Store, user_id: &str, reason: &str, clear: bool) -> anyhow::Result<()> {
    let Ok(reason) = crate::domain::clean_text(reason, 2000, true) else {
        bail!("--reason must be 1-2000 printable characters");
    };
    let decision = CaseDecision { user: user_id.to_owned(), clear, reason: reason.to_owned(), actor: cli_actor() };
    match core::onboarding::decide_case(store, decision, now_ms()).await {
        Ok(to) => {
            println!("{user_id}: {to}");
            Ok(())
        }
        Err(MoveError::NotFound) => bail!("no user {user_id}"),
        Err(MoveError::WrongState(s)) => bail!("{user_id} is not an open compliance case: it is {s}"),
        Err(e) => Err(e.into()),
    }
}
