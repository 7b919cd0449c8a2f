-- Partner webhooks (Standard Webhooks v1): endpoints, the event outbox, and every delivery
-- attempt. Deliveries are `webhook.deliver` jobs.
--
-- The outbox is written by triggers, in the statement that makes the change: no path (the four
-- surfaces, the batched multi-row inserts, a CIP move) can insert a user or append a CIP event
-- without its webhook event, and an event without its change cannot exist because it is rolled
-- back with it. Use cases that emit other types (`kyc.reviewed`, `webhook.test`) insert into
-- `webhook_events` in their own transaction, and the fan-out trigger does the rest.

-- `events` is NULL for every type, else the subscribed types as ',a,b,' (matched with instr).
-- Secrets are sealed by the key-encryption key (bound to their column and `public_id`); a
-- rotated secret keeps signing beside the new one until `previous_secret_until`.
CREATE TABLE webhook_endpoints (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id             TEXT    NOT NULL UNIQUE CHECK (public_id LIKE 'ep_%'),
    partner_id            INTEGER NOT NULL REFERENCES partners (id),
    url                   TEXT    NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    description           TEXT    CHECK (length(description) <= 500),
    events                TEXT,
    enabled               INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    disabled_reason       TEXT,
    secret                BLOB    NOT NULL,
    previous_secret       BLOB,
    previous_secret_until INTEGER,
    -- The first failure of the current run of failures (NULL after a success).
    failing_since         INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    deleted_at            INTEGER
);
CREATE INDEX webhook_endpoints_partner ON webhook_endpoints (partner_id) WHERE deleted_at IS NULL;

-- Append-only. `public_id` is the `webhook-id` header, the same on every attempt and replay.
-- `endpoint_id` is set for an event meant for one endpoint only (a test event).
CREATE TABLE webhook_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id   TEXT    NOT NULL UNIQUE DEFAULT ('msg_' || lower(hex(randomblob(16)))),
    partner_id  INTEGER NOT NULL REFERENCES partners (id),
    type        TEXT    NOT NULL,
    user_id     INTEGER REFERENCES users (id),
    endpoint_id INTEGER REFERENCES webhook_endpoints (id),
    data        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX webhook_events_partner ON webhook_events (partner_id, id);

-- Every delivery attempt: what the receiver answered (or why there was no answer), how fast.
CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    INTEGER NOT NULL REFERENCES webhook_events (id),
    endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoints (id),
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    result      TEXT    NOT NULL CHECK (result IN ('delivered', 'failed', 'gone', 'refused')),
    status      INTEGER,
    latency_ms  INTEGER NOT NULL,
    response    TEXT,
    error       TEXT,
    next_at     INTEGER
);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, id);

-- One delivery job per subscribed, enabled endpoint, queued with the event. max_attempts = 10 is
-- `webhooks::SCHEDULE`'s length plus the first attempt.
CREATE TRIGGER webhook_events_fan_out AFTER INSERT ON webhook_events BEGIN
    INSERT INTO jobs (kind, partner_id, payload, state, attempts, max_attempts, run_at, created_at, updated_at)
    SELECT 'webhook.deliver', e.partner_id, '{"event":' || NEW.id || ',"endpoint":' || e.id || '}', 'queued', 0, 10,
           NEW.created_at, NEW.created_at, NEW.created_at
    FROM webhook_endpoints e
    WHERE e.partner_id = NEW.partner_id AND e.deleted_at IS NULL AND e.enabled = 1
      AND ((NEW.endpoint_id IS NULL AND (e.events IS NULL OR instr(e.events, ',' || NEW.type || ',') > 0))
           OR e.id = NEW.endpoint_id)
    ORDER BY e.id;
END;

CREATE TRIGGER users_created_event AFTER INSERT ON users BEGIN
    INSERT INTO webhook_events (partner_id, type, user_id, data, created_at)
    VALUES (NEW.partner_id, 'user.created', NEW.id,
            CASE WHEN NEW.external_user_id IS NULL THEN json_object('userId', NEW.public_id)
                 ELSE json_object('userId', NEW.public_id, 'externalUserId', NEW.external_user_id) END,
            NEW.created_at);
END;

CREATE TRIGGER user_events_status_changed AFTER INSERT ON user_events BEGIN
    INSERT INTO webhook_events (partner_id, type, user_id, data, created_at)
    SELECT NEW.partner_id, 'cip.status_changed', NEW.user_id,
           json_object('userId', u.public_id, 'from', NEW.from_status, 'to', NEW.to_status,
                       'statusDetail', NEW.to_detail),
           NEW.at
    FROM users u WHERE u.id = NEW.user_id;
END;
