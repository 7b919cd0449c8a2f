//! Storage: one `Store`, two backends (SQLite embedded, PostgreSQL for production).
//!
//! SQL is written once where the dialects agree (`$n` placeholders, `RETURNING`, `ON CONFLICT`)
//! and `with_pool!` runs that text on whichever pool is configured; where they differ the backend
//! arm says so explicitly. The conformance suite in `tests/api/storage.rs` runs on both.
//!
//! SQLite gets one writer connection and a pool of readers: writers on several connections only
//! fight over SQLite's single write lock (busy-timeout sleeps, long tails).

mod records;

use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};

pub use crate::domain::Partner;
pub use crate::domain::credentials::{ApiKeyRecord, ClientRecord};
pub use records::SigningKeyRecord;
use records::{ApiKeyRow, ClientRow, PartnerRow};

use crate::domain::PartnerId;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbSettings {
    /// Connections in the pool (PostgreSQL) or readers (SQLite; writes go through one connection).
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout_ms: u64,
    /// Commit concurrent user inserts together (one transaction and fsync for many requests);
    /// on SQLite every other atomic write (`Store::write`: sign-ups, refresh tokens, job claims
    /// and completions, CIP moves, staff actions) joins the same commits.
    pub group_commit: bool,
    /// Inserts that may wait for the group-commit writer; beyond this, 503 + `Retry-After`.
    pub write_queue: usize,
    /// Concurrent group-commit writers on PostgreSQL (SQLite always has one). Fewer writers make
    /// bigger batches; more overlap commits. Measured best on 2 cores: 1 (BENCHMARKS.md).
    pub batch_writers: usize,
    /// Seed-000 registrations each node remembers (two generations of this many, ≈ 300 bytes
    /// each) so that replays skip the database; 0 turns it off.
    pub recent_registrations: usize,
}

impl Default for DbSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_ms: 5_000,
            group_commit: true,
            write_queue: 8192,
            batch_writers: 1,
            recent_registrations: 32_768,
        }
    }
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("a unique constraint was violated ({0})")]
    Conflict(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("too many writes are waiting")]
    Overloaded,
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                StoreError::Unavailable(err)
            }
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.constraint().unwrap_or(db.message()).to_owned())
            }
            // The database cannot take the write now but is not broken; the request may be retried
            // (nothing was committed): SQLITE_BUSY after the busy timeout, SQLITE_FULL (the disk),
            // and PostgreSQL's connection exceptions (08…), insufficient resources (53…: disk
            // full, out of memory, too many connections) and shutdowns (57P01–57P03).
            sqlx::Error::Database(db) if db.code().as_deref().is_some_and(transient) => StoreError::Unavailable(err),
            _ => StoreError::Database(err),
        }
    }
}

/// SQLite result codes are numbers of at most four digits; PostgreSQL's SQLSTATEs are always
/// five characters, so the two cannot be mistaken for each other.
fn transient(code: &str) -> bool {
    let sqlstate = code.len() == 5;
    // 08P01 (protocol violation) is a bug on this side, not an outage.
    let connection = sqlstate && code.starts_with("08") && code != "08P01";
    matches!(code, "5" | "13" | "57P01" | "57P02" | "57P03") || connection || (sqlstate && code.starts_with("53"))
}

pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod transient_tests {
    #[test]
    fn outages_are_transient_bugs_are_not() {
        for code in ["5", "13", "08006", "08001", "53100", "53300", "57P01"] {
            assert!(super::transient(code), "{code}");
        }
        for code in ["08P01", "23505", "42P01", "1", "19", "2067", "5386"] {
            assert!(!super::transient(code), "{code}");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

enum Backend {
    /// `checkpointer` is the WAL checkpointer's own connection (`checkpoint.rs`); `units` the
    /// group-commit writer's queue once it runs (`batch.rs`).
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
        checkpointer: SqlitePool,
        units: std::sync::Mutex<Option<batch::WeakQueue>>,
    },
    Postgres(PgPool),
}

#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

/// Runs `$body` with `$pool` bound to the pool for `read` or `write` work on either backend.
macro_rules! with_pool {
    ($store:expr, read, |$pool:ident| $body:expr) => {
        with_pool!(@run $store, reader, $pool, $body)
    };
    ($store:expr, write, |$pool:ident| $body:expr) => {
        with_pool!(@run $store, writer, $pool, $body)
    };
    (@run $store:expr, $field:ident, $pool:ident, $body:expr) => {
        match &*$store.backend {
            $crate::store::Backend::Sqlite { $field: $pool, .. } => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}

/// The columns `UserRow` decodes, as a literal for `concat!` (one list for every query).
macro_rules! user_columns {
    () => {
        "id, public_id, partner_id, email, additional_data, created_at"
    };
}

/// The columns `RegistrationRecord` decodes, as a literal for `concat!`.
macro_rules! registration_columns {
    () => {
        "id, public_id, external_user_id, auth_method, identifier, user_type, alias, created_at"
    };
}

/// Runs `$body` (the body of an async block over the connection `$conn`, answering a
/// `StoreResult`) as one atomic write through `Store::write`, with `$conn` the backend's own
/// connection type, so the same SQL text compiles for both.
macro_rules! write_unit {
    ($store:expr, |$conn:ident| $body:block) => {
        $store
            .write(move |tx| {
                $crate::store::pin_unit(async move {
                    match tx {
                        $crate::store::Tx::Sqlite($conn) => $body,
                        $crate::store::Tx::Postgres($conn) => $body,
                    }
                })
            })
            .await
    };
}

/// Runs `$body` with `$conn` bound to the `Tx`'s connection: the same SQL text, compiled once
/// per backend. Plumbing only: the body is an ordinary expression of the calling function.
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx.reborrow() {
            $crate::store::Tx::Sqlite($conn) => $body,
            $crate::store::Tx::Postgres($conn) => $body,
        }
    };
}

pub mod audit;
mod batch;
pub mod billing;
mod checkpoint;
pub mod checks;
pub mod consents;
pub mod console;
pub mod events;
pub mod idempotency;
pub mod jobs;
pub mod kyc;
pub mod nodes;
pub mod partners;
pub mod prospects;
mod registrations;
pub mod sanctions;
pub mod signups;
pub mod staff;
mod tx;
mod users;
pub mod webhooks;

pub use audit::{AuditEntry, AuditRecord};
pub use batch::{NewRegistration, Respond, UserWriter};
pub use events::UserEvent;
pub use idempotency::{Claim, ClaimRequest, IdempotencyScope, StoredResponse};
pub use jobs::{ClaimedJob, JobRow, NewJob, QueueStats};
pub use prospects::{ComplianceCase, Duplicate, Lookup, NewProspect, ProspectRecord, Whose};
pub use registrations::{RecentRegistrations, Registered, RegistrationRecord};
pub use sanctions::{ListVersion, NewList, NewScreening, ScreenablePerson};
pub use signups::{
    CompleteSignup, EndUser, NewRefreshToken, NewSignup, PendingSignup, Rotation, SignupCompletion, SignupStart,
    TokenOwner,
};
pub use staff::StaffTokenRecord;
pub use tx::{BoxFuture, Tx, boxed, pin_unit};
pub use users::{NewMinimalUser, UserRecord};

/// The partner columns every partner-returning query selects, as a literal for `concat!`.
macro_rules! partner_columns {
    () => {
        "p.id, p.name, p.environment, p.created_at"
    };
}

impl Store {
    /// Connects to `url`, creating the SQLite file when it does not exist yet.
    pub async fn connect(url: &str, settings: &DbSettings) -> StoreResult<Self> {
        let acquire = Duration::from_millis(settings.acquire_timeout_ms);
        let backend = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before the 2xx, power loss included.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                // A multi-row INSERT (every group commit) keeps a statement journal so that one
                // failing row can roll back the statement alone. With SQLite's default it is a
                // temporary *file*: an open, writes and a close per batch, ~15 % of the server's
                // CPU under load (perf, BENCHMARKS.md). Memory is enough: it holds only the pages
                // one statement changes.
                .pragma("temp_store", "memory")
                .busy_timeout(Duration::from_secs(5));
            // No ping before each acquire: a SQLite connection is a file handle that cannot be
            // dropped by a server, and on a loaded machine the extra round trip to sqlx's
            // connection thread costs more than the query (sqlx still checks each one on release).
            let writer = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .acquire_timeout(acquire)
                // Commits never checkpoint; `checkpoint.rs` does, beside the writer.
                .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
                .await?;
            let checkpointer = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(acquire)
                .connect_with(options.clone())
                .await?;
            let reader = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(settings.max_connections.clamp(1, 8))
                .acquire_timeout(acquire)
                .connect_with(options.read_only(true))
                .await?;
            Backend::Sqlite { writer, reader, checkpointer, units: std::sync::Mutex::new(None) }
        } else {
            let options = PgConnectOptions::from_str(url)?.application_name("onboard");
            let pool = PgPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(acquire)
                .connect_with(options)
                .await?;
            Backend::Postgres(pool)
        };
        let backend = Arc::new(backend);
        if matches!(*backend, Backend::Sqlite { .. }) {
            checkpoint::spawn(Arc::downgrade(&backend));
        }
        Ok(Self { backend })
    }

    pub fn kind(&self) -> BackendKind {
        match &*self.backend {
            Backend::Sqlite { .. } => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    fn migrator(&self) -> &'static Migrator {
        match self.kind() {
            BackendKind::Sqlite => &SQLITE_MIGRATIONS,
            BackendKind::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies pending migrations. On PostgreSQL sqlx holds an advisory lock while it does, so
    /// nodes starting together migrate once and the others wait for it.
    pub async fn migrate(&self) -> StoreResult<()> {
        let migrator = self.migrator();
        with_pool!(self, write, |pool| migrator.run(pool).await?);
        Ok(())
    }

    /// True when every migration this binary knows has been applied successfully.
    pub async fn migrations_current(&self) -> StoreResult<bool> {
        let applied: Vec<i64> = with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(pool)
                .await?
        });
        let known: Vec<i64> =
            self.migrator().iter().filter(|m| m.migration_type.is_up_migration()).map(|m| m.version).collect();
        Ok(known.iter().all(|v| applied.contains(v)))
    }

    pub async fn ping(&self) -> StoreResult<()> {
        with_pool!(self, read, |pool| sqlx::query("SELECT 1").execute(pool).await.map(drop)?);
        Ok(())
    }

    /// Pool gauges for `/metrics`: (connections open, of which idle).
    pub fn pool_stats(&self) -> (u32, usize) {
        match &*self.backend {
            Backend::Sqlite { writer, reader, .. } => {
                (writer.size() + reader.size(), writer.num_idle() + reader.num_idle())
            }
            Backend::Postgres(pg) => (pg.size(), pg.num_idle()),
        }
    }

    pub async fn close(&self) {
        match &*self.backend {
            Backend::Sqlite { writer, reader, checkpointer, .. } => {
                reader.close().await;
                writer.close().await;
                checkpointer.close().await;
            }
            Backend::Postgres(pg) => pg.close().await,
        }
    }

    // ---- partners -------------------------------------------------------------------------

    pub async fn list_partners(&self) -> StoreResult<Vec<Partner>> {
        let rows: Vec<PartnerRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!("SELECT ", partner_columns!(), " FROM partners p ORDER BY p.id"))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(Partner::try_from).collect()
    }

    pub async fn find_partner(&self, id: PartnerId) -> StoreResult<Option<Partner>> {
        let row: Option<PartnerRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!("SELECT ", partner_columns!(), " FROM partners p WHERE p.id = $1"))
                .bind(id.get())
                .fetch_optional(pool)
                .await?
        });
        row.map(Partner::try_from).transpose()
    }

    pub async fn find_api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            partner_columns!(),
            ", k.secret_hash, k.expires_at, k.revoked_at
             FROM api_keys k JOIN partners p ON p.id = k.partner_id WHERE k.id = $1"
        );
        self.find_by_key::<ApiKeyRow, _>(SQL, id).await
    }

    pub async fn find_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            partner_columns!(),
            ", c.secret_hash, c.revoked_at
             FROM oauth_clients c JOIN partners p ON p.id = c.partner_id WHERE c.client_id = $1"
        );
        self.find_by_key::<ClientRow, _>(SQL, client_id).await
    }

    /// The row `sql` finds by one text key (`$1`), on a reader, decoded into its record.
    pub(crate) async fn find_by_key<R, T>(&self, sql: &'static str, key: &str) -> StoreResult<Option<T>>
    where
        R: Send + Unpin + for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow>,
        T: TryFrom<R, Error = StoreError>,
    {
        let row: Option<R> = with_pool!(self, read, |pool| sqlx::query_as(sql).bind(key).fetch_optional(pool).await?);
        row.map(T::try_from).transpose()
    }

    // ---- signing keys ---------------------------------------------------------------------

    /// Stores `candidate` as the signing key unless one is already current (another node may
    /// have been first; the UNIQUE `is_current` column decides).
    pub async fn ensure_signing_key(&self, candidate: &SigningKeyRecord) -> StoreResult<()> {
        with_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, created_at, is_current)
                 SELECT $1, 'EdDSA', $2, $3, $4, 1
                 WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE is_current = 1)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&candidate.kid)
            .bind(&candidate.private_key)
            .bind(&candidate.public_key)
            .bind(candidate.created_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Makes `new` the signing key; the previous one keeps verifying until `old_verify_until`.
    pub async fn rotate_signing_key(&self, new: &SigningKeyRecord, old_verify_until: i64) -> StoreResult<()> {
        let new = new.clone();
        self.write(move |mut tx| pin_unit(async move { rotate_signing_key(&mut tx, &new, old_verify_until).await }))
            .await
    }

    /// The current key and every retired key still inside its verification window.
    pub async fn usable_signing_keys(&self, now: i64) -> StoreResult<Vec<SigningKeyRecord>> {
        let keys = with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT kid, private_key, public_key, created_at, is_current, verify_until FROM signing_keys
                 WHERE is_current = 1 OR verify_until > $1 ORDER BY created_at DESC",
            )
            .bind(now)
            .fetch_all(pool)
            .await?
        });
        Ok(keys)
    }
}

/// Every signing key (usable or not), read in the open transaction: what a rewrap reseals.
pub async fn signing_keys_in(tx: &mut Tx<'_>) -> StoreResult<Vec<SigningKeyRecord>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(
            "SELECT kid, private_key, public_key, created_at, is_current, verify_until FROM signing_keys ORDER BY kid",
        )
        .fetch_all(conn)
        .await?
    }))
}

/// Replaces a signing key's stored private half (resealed), in the open transaction.
pub async fn replace_private_key(tx: &mut Tx<'_>, key: &SigningKeyRecord) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query("UPDATE signing_keys SET private_key = $1 WHERE kid = $2")
            .bind(&key.private_key)
            .bind(&key.kid)
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}

/// Makes `new` the signing key in the open transaction; the previous one keeps verifying until
/// `old_verify_until`.
pub async fn rotate_signing_key(tx: &mut Tx<'_>, new: &SigningKeyRecord, old_verify_until: i64) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query("UPDATE signing_keys SET is_current = NULL, verify_until = $1 WHERE is_current = 1")
            .bind(old_verify_until)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, created_at, is_current)
             VALUES ($1, 'EdDSA', $2, $3, $4, 1)",
        )
        .bind(&new.kid)
        .bind(&new.private_key)
        .bind(&new.public_key)
        .bind(new.created_at)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}
