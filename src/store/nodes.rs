//! The nodes table: who is alive (heartbeats), and releasing a dead node's claims.

use super::{Store, StoreResult, pin_unit};

/// One process start.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NodeRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

/// What releasing a dead node's claims freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    pub jobs: u64,
    pub idempotency_keys: u64,
}

impl Store {
    pub async fn register_node(&self, node: &NodeRow) -> StoreResult<()> {
        let node = node.clone();
        self.write(move |mut tx| {
            pin_unit(async move {
                on_tx!(tx, |conn| {
                    sqlx::query(
                        "INSERT INTO nodes (id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&node.id)
                    .bind(&node.host)
                    .bind(node.pid)
                    .bind(node.started_at)
                    .bind(node.heartbeat_at)
                    .execute(conn)
                    .await?
                    .rows_affected()
                });
                Ok(())
            })
        })
        .await
    }

    /// Records that `id` is alive. False when another node had declared it dead (its claims
    /// were released; what it still runs will find its leases gone).
    pub async fn node_heartbeat(&self, id: &str, now: i64) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |mut tx| {
            pin_unit(async move {
                let alive = on_tx!(tx, |conn| {
                    sqlx::query("UPDATE nodes SET heartbeat_at = $2 WHERE id = $1 AND reaped_at IS NULL")
                        .bind(&id)
                        .bind(now)
                        .execute(conn)
                        .await?
                        .rows_affected()
                });
                Ok(alive == 1)
            })
        })
        .await
    }

    /// The other nodes not stopped nor released that ran on `host` (a restart's predecessors;
    /// the caller judges them by their pid).
    pub async fn live_nodes_on_host(&self, me: &str, host: &str) -> StoreResult<Vec<NodeRow>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, host, pid, started_at, heartbeat_at FROM nodes
                 WHERE stopped_at IS NULL AND reaped_at IS NULL AND id <> $1 AND host = $2",
            )
            .bind(me)
            .bind(host)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The other nodes not stopped nor released whose last heartbeat is older than `before`.
    pub async fn silent_nodes(&self, me: &str, before: i64) -> StoreResult<Vec<NodeRow>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, host, pid, started_at, heartbeat_at FROM nodes
                 WHERE stopped_at IS NULL AND reaped_at IS NULL AND id <> $1 AND heartbeat_at < $2",
            )
            .bind(me)
            .bind(before)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Releases what `id` holds — its running jobs' leases and its in-flight Idempotency-Key
    /// claims end now, so any node may take them — and marks it released (or, for the node
    /// itself at a clean stop, stopped), in one write. `only_if_silent_since` guards against
    /// releasing a node whose heartbeat arrived meanwhile.
    pub async fn release_node(
        &self,
        id: &str,
        only_if_silent_since: Option<i64>,
        stopping: bool,
        now: i64,
    ) -> StoreResult<Option<Released>> {
        let id = id.to_owned();
        self.write(move |mut tx| {
            pin_unit(async move {
                let sql = if stopping {
                    "UPDATE nodes SET stopped_at = $2
                     WHERE id = $1 AND stopped_at IS NULL AND reaped_at IS NULL AND ($3 IS NULL OR heartbeat_at < $3)"
                } else {
                    "UPDATE nodes SET reaped_at = $2
                     WHERE id = $1 AND stopped_at IS NULL AND reaped_at IS NULL AND ($3 IS NULL OR heartbeat_at < $3)"
                };
                let marked = on_tx!(tx, |conn| {
                    sqlx::query(sql)
                    .bind(&id)
                    .bind(now)
                    .bind(only_if_silent_since)
                    .execute(conn)
                    .await?
                    .rows_affected()
                });
                if marked == 0 {
                    return Ok(None);
                }
                // `lease_until < now` is what makes a running job claimable again.
                let jobs = on_tx!(tx, |conn| {
                    sqlx::query("UPDATE jobs SET lease_until = $2 WHERE state = 'running' AND worker = $1 AND lease_until >= $3")
                        .bind(&id)
                        .bind(now - 1)
                        .bind(now)
                        .execute(conn)
                        .await?
                        .rows_affected()
                });
                let idempotency_keys = on_tx!(tx, |conn| {
                    sqlx::query(
                        "UPDATE idempotency_keys SET locked_until = $2
                         WHERE state = 'in_flight' AND node_id = $1 AND locked_until > $2",
                    )
                    .bind(&id)
                    .bind(now)
                    .execute(conn)
                    .await?
                    .rows_affected()
                });
                Ok(Some(Released { jobs, idempotency_keys }))
            })
        })
        .await
    }
}
