//! A finer busy handler for SQLite connections.
//!
//! SQLite's own (`sqlite3_busy_timeout`) sleeps 1, 2, 5, 10, 15, 20, 25, … ms between tries of a
//! lock another connection holds: a group commit that finds the write lock taken for 3 ms (the
//! checkpointer's RESTART, `checkpoint.rs`, or another `onboard` process on the same file)
//! sleeps 8, and one blocked for 9 ms sleeps 18, and every request in the batch carries that
//! sleep. Traced under seed 000's saturating load, the writer slept 5.4 ms on average and up to
//! 15 ms in those waits (BENCHMARKS.md, 2026-12-02). This handler retries every 100 µs for the
//! first 10 ms, then every millisecond, within the same overall budget, so a waiter gets the
//! lock within ~0.1 ms of its release. sqlx has no busy-handler option, hence the FFI call,
//! through the handle sqlx documents for it (`LockedSqliteHandle::as_raw_handle`).

use std::ffi::{c_int, c_void};
use std::time::Duration;

use libsqlite3_sys::sqlite3_busy_handler;
use sqlx::SqliteConnection;

const FINE_TRIES: c_int = 100;
const FINE_PAUSE: Duration = Duration::from_micros(100);
const COARSE_PAUSE: Duration = Duration::from_millis(1);

/// Installs the handler on `connection`, giving up on a lock after about `budget`.
pub(super) async fn install(connection: &mut SqliteConnection, budget: Duration) -> Result<(), sqlx::Error> {
    let mut handle = connection.lock_handle().await?;
    // The budget travels as the callback's context pointer: an integer, never dereferenced.
    let budget_ms = usize::try_from(budget.as_millis()).unwrap_or(usize::MAX);
    // SAFETY: the handle is locked (sqlx's connection thread makes no call on it meanwhile) and
    // valid for the connection's life; `wait` is a plain function and its context is an integer
    // value, so nothing it refers to can be freed before the connection is closed.
    let rc = unsafe { sqlite3_busy_handler(handle.as_raw_handle().as_ptr(), Some(wait), budget_ms as *mut c_void) };
    if rc != 0 {
        return Err(sqlx::Error::Configuration(format!("sqlite3_busy_handler failed ({rc})").into()));
    }
    Ok(())
}

/// How long the tries before try number `tries` have slept, at least.
fn slept(tries: c_int) -> Duration {
    let fine = tries.min(FINE_TRIES);
    let coarse = (tries - fine).max(0);
    FINE_PAUSE * fine as u32 + COARSE_PAUSE * coarse as u32
}

/// SQLite's busy callback: 0 gives up (the statement fails with SQLITE_BUSY), anything else
/// retries the lock. `tries` counts the earlier calls for the same lock.
unsafe extern "C" fn wait(budget_ms: *mut c_void, tries: c_int) -> c_int {
    let budget = Duration::from_millis(budget_ms as usize as u64);
    if slept(tries) >= budget {
        metrics::counter!("db_busy_timeouts_total").increment(1);
        return 0;
    }
    metrics::counter!("db_busy_waits_total").increment(1);
    std::thread::sleep(if tries < FINE_TRIES { FINE_PAUSE } else { COARSE_PAUSE });
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_the_waiting() {
        assert_eq!(slept(0), Duration::ZERO);
        assert_eq!(slept(FINE_TRIES), Duration::from_millis(10));
        assert_eq!(slept(FINE_TRIES + 990), Duration::from_millis(1000));
        let budget = 20usize as *mut c_void;
        // SAFETY: `wait` only reads its context as an integer.
        unsafe {
            assert_eq!(wait(budget, 0), 1);
            assert_eq!(wait(budget, FINE_TRIES + 10), 0, "10 ms fine + 10 ms coarse is the whole 20 ms budget");
        }
    }
}
