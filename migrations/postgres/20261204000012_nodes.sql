-- Every process that serves or runs jobs, one row per start, with a heartbeat. A node whose
-- heartbeat stops is presumed dead well before the leases it holds run out: another node
-- releases its job leases and in-flight Idempotency-Key claims at once (reaped_at); a node
-- restarted on the same host releases its dead predecessor's at start. A clean stop sets stopped_at.
CREATE TABLE nodes (
    id           TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    stopped_at   BIGINT,
    reaped_at    BIGINT
);
CREATE INDEX nodes_live ON nodes (heartbeat_at) WHERE stopped_at IS NULL AND reaped_at IS NULL;

-- Which node holds an unfinished claim (jobs already name theirs in worker).
ALTER TABLE idempotency_keys ADD COLUMN node_id TEXT;
CREATE INDEX idempotency_keys_node ON idempotency_keys (node_id) WHERE state = 'in_flight';
CREATE INDEX jobs_worker ON jobs (worker) WHERE state = 'running';
