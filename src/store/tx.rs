//! An open write on either backend (`Tx`), and `Store::write`, the one way a use case runs as
//! one atomic write. Repositories take `&mut Tx` and run their SQL through `on_tx!`, so a core
//! function composes them without knowing the backend or whether its write joins a group commit.

use std::future::Future;
use std::pin::Pin;

use sqlx::{PgConnection, SqliteConnection};

use super::{Backend, Store, StoreError, StoreResult};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The connection of an open transaction (or of a savepoint inside a group-commit batch).
pub enum Tx<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl Tx<'_> {
    /// A shorter-lived handle on the same connection, for one repository call.
    pub fn reborrow(&mut self) -> Tx<'_> {
        match self {
            Tx::Sqlite(conn) => Tx::Sqlite(conn),
            Tx::Postgres(conn) => Tx::Postgres(conn),
        }
    }
}

impl<'c> From<&'c mut SqliteConnection> for Tx<'c> {
    fn from(conn: &'c mut SqliteConnection) -> Self {
        Tx::Sqlite(conn)
    }
}

impl<'c> From<&'c mut PgConnection> for Tx<'c> {
    fn from(conn: &'c mut PgConnection) -> Self {
        Tx::Postgres(conn)
    }
}

/// Boxes a write body, fixing its error type to `StoreError` (so `?` inside it converts).
pub fn pin_unit<'c, T>(body: impl Future<Output = StoreResult<T>> + Send + 'c) -> BoxFuture<'c, StoreResult<T>> {
    Box::pin(body)
}

/// Boxes a write body whose error type its last expression decides (a core function's call).
pub fn boxed<'c, T, E>(body: impl Future<Output = Result<T, E>> + Send + 'c) -> BoxFuture<'c, Result<T, E>> {
    Box::pin(body)
}

impl Store {
    /// Runs `body` as one atomic write: committed when it answers `Ok`, rolled back when it
    /// answers `Err`. On SQLite the write joins the next group-commit batch when the writer runs
    /// (`Store::sqlite_unit`; its answer comes after the batch's COMMIT, so `Ok` is durable);
    /// otherwise, and on PostgreSQL, it is a transaction of its own. The body owns what it uses
    /// (it may run on the writer's task) and must not wait for another write.
    pub async fn write<T, E, F>(&self, body: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'c> FnOnce(Tx<'c>) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        match &*self.backend {
            Backend::Sqlite { .. } => self.sqlite_unit(move |conn| body(Tx::Sqlite(conn))).await,
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(StoreError::from)?;
                let value = body(Tx::Postgres(&mut tx)).await?;
                tx.commit().await.map_err(StoreError::from)?;
                Ok(value)
            }
        }
    }
}
