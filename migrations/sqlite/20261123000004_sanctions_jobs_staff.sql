-- Sanctions lists, screenings, the durable job table, staff tokens, the audit log, and the person
-- and CIP columns of users that screening reads and writes (DESIGN.md §3, §4, §7).

-- One row per list publication loaded; the sha256 over its files makes a second load a no-op.
CREATE TABLE sanctions_lists (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256       BLOB    NOT NULL UNIQUE CHECK (length(sha256) = 32),
    published_on TEXT,
    source       TEXT    NOT NULL,
    entries      INTEGER NOT NULL,
    alt_rows     INTEGER NOT NULL,
    address_rows INTEGER NOT NULL,
    comment_rows INTEGER NOT NULL,
    orphan_rows  INTEGER NOT NULL,
    loaded_at    INTEGER NOT NULL
);

-- The files as published, so every node builds its index from the same bytes.
CREATE TABLE sanctions_list_files (
    list_id INTEGER NOT NULL REFERENCES sanctions_lists (id),
    name    TEXT    NOT NULL CHECK (name IN ('sdn.csv', 'alt.csv', 'add.csv', 'sdn_comments.csv')),
    content BLOB    NOT NULL,
    PRIMARY KEY (list_id, name)
);

-- Every screening: what was asked, against which list, what came back, who asked.
CREATE TABLE screenings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    list_id    INTEGER NOT NULL REFERENCES sanctions_lists (id),
    partner_id INTEGER REFERENCES partners (id),
    user_id    INTEGER REFERENCES users (id),
    actor      TEXT    NOT NULL,
    query      TEXT    NOT NULL,
    decision   TEXT    NOT NULL CHECK (decision IN ('match', 'review', 'clear')),
    top_score  REAL,
    matches    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX screenings_user ON screenings (user_id, id);

-- The durable job queue (outbox): rows are written in the caller's transaction.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT    NOT NULL,
    partner_id   INTEGER REFERENCES partners (id),
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at       INTEGER NOT NULL,
    lease_until  INTEGER,
    worker       TEXT,
    last_error   TEXT,
    -- Enqueueing the same unit of work twice (a retried step, a reloaded list) is a no-op.
    dedupe_key   TEXT    UNIQUE,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX jobs_ready ON jobs (kind, state, run_at);

-- Staff (compliance, operator) tokens: `onb_admin_<id>_<secret>`, only the SHA-256 is kept.
CREATE TABLE admin_tokens (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    role        TEXT    NOT NULL CHECK (role IN ('compliance', 'operator')),
    secret_hash BLOB    NOT NULL CHECK (length(secret_hash) = 32),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT,
    detail TEXT    NOT NULL
);

ALTER TABLE users ADD COLUMN first_name TEXT;
ALTER TABLE users ADD COLUMN middle_name TEXT;
ALTER TABLE users ADD COLUMN last_name TEXT;
ALTER TABLE users ADD COLUMN second_last_name TEXT;
ALTER TABLE users ADD COLUMN date_of_birth TEXT;
ALTER TABLE users ADD COLUMN country TEXT CHECK (length(country) = 2);
ALTER TABLE users ADD COLUMN cip_status TEXT;
ALTER TABLE users ADD COLUMN cip_detail TEXT;
CREATE INDEX users_screenable ON users (id) WHERE last_name IS NOT NULL;

-- CIP transitions, append-only (DESIGN.md §3).
CREATE TABLE user_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id),
    partner_id  INTEGER NOT NULL REFERENCES partners (id),
    at          INTEGER NOT NULL,
    from_status TEXT,
    from_detail TEXT,
    to_status   TEXT    NOT NULL,
    to_detail   TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    actor       TEXT    NOT NULL
);
CREATE INDEX user_events_user ON user_events (user_id, id);
