//! SQLite WAL checkpoints, off the writer's commit path.
//!
//! By default SQLite checkpoints inside whichever commit takes the WAL past 1,000 pages: that
//! commit copies the pages back into the database file and fsyncs it while every group-commit
//! batch queued behind it waits. Under seed 000's load (random `externalUserId`s touch a new
//! index leaf per row) that was a checkpoint every ~25 batches on the one writer
//! (BENCHMARKS.md). Here the writer never checkpoints (`wal_autocheckpoint = 0`); a task with a
//! connection of its own does:
//!
//! - PASSIVE every `INTERVAL`: it runs beside the writer and never blocks it;
//! - RESTART once the WAL holds more than `RESTART_FRAMES` frames. Under sustained writes a
//!   passive checkpoint never catches up with the last frame, so SQLite cannot start the WAL
//!   over and the file would grow without bound; RESTART takes the write lock between two
//!   batches, copies what little the passive pass left, and lets the next commit rewind.
//!
//! Durability is untouched: frames are durable in the WAL (fsynced at each commit) until a
//! checkpoint has copied and fsynced them into the database file.

use std::sync::Weak;
use std::time::{Duration, Instant};

use sqlx::SqlitePool;

use super::Backend;

const INTERVAL: Duration = Duration::from_millis(100);
/// 8,192 frames of 4 KiB: the WAL stays under ~32 MiB.
const RESTART_FRAMES: i64 = 8_192;

/// Checkpoints until the store is dropped or closed.
pub(super) fn spawn(backend: Weak<Backend>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(INTERVAL).await;
            let Some(backend) = backend.upgrade() else { return };
            let Backend::Sqlite { checkpointer, .. } = &*backend else { return };
            if checkpointer.is_closed() {
                return;
            }
            if let Err(err) = checkpoint(checkpointer).await {
                tracing::warn!(error = ?err, "WAL checkpoint failed; retrying");
            }
        }
    });
}

async fn checkpoint(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let started = Instant::now();
    // (busy, frames in the WAL, frames checkpointed); -1s when the database is not in WAL mode.
    let (_, frames, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(pool).await?;
    if frames > RESTART_FRAMES {
        let restart = Instant::now();
        sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(pool).await?;
        metrics::counter!("db_checkpoint_restarts_total").increment(1);
        metrics::histogram!("db_checkpoint_restart_seconds").record(restart.elapsed().as_secs_f64());
    }
    metrics::gauge!("db_wal_frames").set(frames as f64);
    metrics::histogram!("db_checkpoint_duration_seconds").record(started.elapsed().as_secs_f64());
    Ok(())
}
