//! `onboard admin …` (staff tokens) and `onboard jobs …` (the job queue), for operators.

use anyhow::{Context, bail};
use clap::Subcommand;
use secrecy::ExposeSecret;

use crate::auth::staff::{NewStaffToken, StaffRole};
use crate::config::Settings;
use crate::core::{self, onboarding::CaseDecision, onboarding::MoveError};
use crate::domain::now_ms;
use crate::startup::open_store;
use crate::store::Store;

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

/// Opens the store for one command, runs it, and closes the store whatever it answered.
pub(super) async fn with_store<T, F>(settings: &Settings, run: impl FnOnce(Store) -> F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let store = open_store(settings).await?;
    let result = run(store.clone()).await;
    store.close().await;
    result
}

pub async fn admin(settings: Settings, command: AdminCommand) -> anyhow::Result<()> {
    with_store(&settings, |store| async move {
        match command {
            AdminCommand::Token { command: TokenCommand::Create { name, role, json } } => {
                create_token(&store, &name, role, json).await
            }
            AdminCommand::Token { command: TokenCommand::List } => list_tokens(&store).await,
            AdminCommand::Token { command: TokenCommand::Revoke { name } } => {
                if !core::staff::revoke_token(&store, &name, &cli_actor(), now_ms()).await? {
                    bail!("no live token named {name:?}");
                }
                println!("token {name:?} revoked");
                Ok(())
            }
            AdminCommand::Audit { limit } => {
                for e in store.audit_log(limit).await? {
                    let (at, target) = (crate::http::rfc3339(e.at), e.target.unwrap_or_default());
                    println!("{at} {:<24} {:<28} {target:<24} {}", e.actor, e.action, e.detail);
                }
                Ok(())
            }
        }
    })
    .await
}

async fn create_token(store: &Store, name: &str, role: StaffRole, json: bool) -> anyhow::Result<()> {
    let Ok(name) = crate::domain::clean_text(name, 200, true) else {
        bail!("--name must be 1-200 printable characters");
    };
    let token = NewStaffToken::generate();
    core::staff::create_token(store, name, role, &token, &cli_actor(), now_ms())
        .await
        .with_context(|| format!("cannot create a token named {name:?} (names are unique)"))?;
    let secret = token.token.expose_secret();
    if json {
        println!("{}", serde_json::json!({ "name": name, "role": role, "token": secret }));
    } else {
        println!("{role} token for {name} (shown only now):\n  {secret}");
    }
    Ok(())
}

async fn list_tokens(store: &Store) -> anyhow::Result<()> {
    println!("{:<24} {:<11} {:<25} revoked", "name", "role", "created");
    for t in store.list_staff_tokens().await? {
        let revoked = t.revoked_at.map(crate::http::rfc3339).unwrap_or_default();
        println!("{:<24} {:<11} {:<25} {revoked}", t.name, t.role.as_str(), crate::http::rfc3339(t.created_at));
    }
    Ok(())
}

pub async fn jobs(settings: Settings, command: JobsCommand) -> anyhow::Result<()> {
    let rules = settings.jobs.clone();
    with_store(&settings, |store| async move {
        match command {
            JobsCommand::Stats => {
                let now = now_ms();
                println!(
                    "{:<24} {:>8} {:>8} {:>8}  {:<25} waiting since",
                    "kind", "queued", "running", "dead", "oldest due"
                );
                for s in store.queue_stats(now).await? {
                    let oldest = s.oldest_due.map(crate::http::rfc3339).unwrap_or_default();
                    let waiting = s.oldest_waiting.map(crate::http::rfc3339).unwrap_or_default();
                    let stuck = if rules.is_stuck(s.oldest_waiting, now) { "  STUCK" } else { "" };
                    println!(
                        "{:<24} {:>8} {:>8} {:>8}  {oldest:<25} {waiting}{stuck}",
                        s.kind, s.queued, s.running, s.dead
                    );
                }
            }
            JobsCommand::List { kind, state, limit } => {
                for j in store.list_jobs(kind.as_deref(), state.as_deref(), limit).await? {
                    let error = j.last_error.unwrap_or_default();
                    println!("{:>8} {:<24} {:<8} attempts {:>2}  {error}", j.id, j.kind, j.state, j.attempts);
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
    })
    .await
}

pub async fn compliance(settings: Settings, command: ComplianceCommand) -> anyhow::Result<()> {
    with_store(&settings, |store| async move {
        match command {
            ComplianceCommand::List { after, limit, json } => list_cases(&store, after, limit, json).await,
            ComplianceCommand::Clear { user_id, reason } => decide_case(&store, &user_id, &reason, true).await,
            ComplianceCommand::Block { user_id, reason } => decide_case(&store, &user_id, &reason, false).await,
        }
    })
    .await
}

async fn list_cases(store: &Store, after: i64, limit: i64, json: bool) -> anyhow::Result<()> {
    for case in store.compliance_cases(after, limit.clamp(1, 1000)).await? {
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
        if let Some(reason) = &case.reason {
            println!("         {reason}");
        }
    }
    Ok(())
}

async fn decide_case(store: &Store, user_id: &str, reason: &str, clear: bool) -> anyhow::Result<()> {
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
