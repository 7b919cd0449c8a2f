//! This process as a node among others on one database: a row per start with a heartbeat, so
//! that the claims a dead node held (job leases, in-flight Idempotency-Key claims) are released
//! within seconds instead of when their leases run out (`jobs.lease_secs`, `idempotency.lease_secs`):
//! - a node restarted on the same host releases its predecessor's at start, when that process
//!   is gone (its pid no longer runs, or is this process's own: a container restarted as pid 1);
//! - every node releases those of a node whose heartbeat is older than `node.dead_after_secs`;
//! - a clean stop releases what is left of its own.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::domain::now_ms;
use crate::store::nodes::NodeRow;
use crate::store::{Store, StoreResult};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// How often this node records that it is alive.
    pub heartbeat_secs: u64,
    /// A node silent for this long is presumed dead and its claims are released. Well below the
    /// leases, well above a heartbeat (a busy node must not be declared dead).
    pub dead_after_secs: u64,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self { heartbeat_secs: 5, dead_after_secs: 20 }
    }
}

/// This process's identity among the nodes: `node-<uuid v7>`, new at every start. Job leases
/// (`jobs.worker`) and Idempotency-Key claims carry it.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    host: String,
}

impl Node {
    /// Registers this start and releases the claims of this host's dead predecessors.
    pub async fn start(store: &Store) -> StoreResult<Self> {
        let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".into());
        let node = Self { id: format!("node-{}", uuid::Uuid::now_v7().simple()), host };
        let now = now_ms();
        let row = NodeRow {
            id: node.id.clone(),
            host: node.host.clone(),
            pid: i64::from(std::process::id()),
            started_at: now,
            heartbeat_at: now,
        };
        store.register_node(&row).await?;
        // Rows this process wrote (several applications in one process, as tests run them)
        // start at or after its first node; a row with this pid from before is a predecessor
        // that had the same pid (a container restarted as pid 1).
        static FIRST_START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
        let process_started = *FIRST_START.get_or_init(|| now);
        for previous in store.live_nodes_on_host(&node.id, &node.host).await? {
            let ours = previous.pid == i64::from(std::process::id()) && previous.started_at >= process_started;
            if !ours && !process_runs(previous.pid) {
                release(store, &previous, None, "restarted on this host").await;
            }
        }
        Ok(node)
    }

    /// Heartbeats, and releases the claims of nodes that went silent, until `stop` turns true.
    pub async fn watch(self, store: Store, settings: NodeSettings, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(settings.heartbeat_secs.max(1)));
        let dead_after = crate::domain::secs_to_ms(settings.dead_after_secs);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let now = now_ms();
            match store.node_heartbeat(&self.id, now).await {
                Ok(true) => {}
                Ok(false) => tracing::error!(
                    node = %self.id,
                    "another node declared this one dead (no heartbeat for node.dead_after_secs) and released its claims"
                ),
                Err(error) => tracing::warn!(%error, "node heartbeat failed"),
            }
            let silent_since = now - dead_after;
            let Ok(silent) = store.silent_nodes(&self.id, silent_since).await else { continue };
            for dead in &silent {
                release(&store, dead, Some(silent_since), "stopped sending heartbeats").await;
            }
        }
    }

    /// A clean stop: what this node still holds is released, and it is marked stopped.
    pub async fn stop(&self, store: &Store) {
        if let Err(error) = store.release_node(&self.id, None, true, now_ms()).await {
            tracing::warn!(%error, "could not mark this node stopped");
        }
    }
}

async fn release(store: &Store, node: &NodeRow, only_if_silent_since: Option<i64>, why: &'static str) {
    match store.release_node(&node.id, only_if_silent_since, false, now_ms()).await {
        Ok(Some(released)) => {
            metrics::counter!("nodes_released_total").increment(1);
            tracing::warn!(
                node = %node.id,
                host = %node.host,
                jobs = released.jobs,
                idempotency_keys = released.idempotency_keys,
                why,
                "released a dead node's claims"
            );
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, node = %node.id, "releasing a dead node's claims failed"),
    }
}

/// Whether `pid` is a running process other than this one (on this host). Signal 0 checks
/// existence without signalling; EPERM means it exists under another user.
fn process_runs(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 || pid == std::process::id() as libc::pid_t {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only reports whether the process exists.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
