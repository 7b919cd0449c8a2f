-- The compliance and operations console (issue 26).

-- A browser session opened with a staff token. Only the SHA-256 of the cookie's secret is kept,
-- so a copy of the database opens no session; signing out sets ended_at (rows are kept as the
-- record of who was signed in when). Revoking the token ends its sessions (the lookup joins it).
CREATE TABLE console_sessions (
    id_hash      BLOB    PRIMARY KEY CHECK (length(id_hash) = 32),
    token_id     TEXT    NOT NULL REFERENCES admin_tokens (id),
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    ended_at     INTEGER
);

-- Who is reviewing a case, until when. One row per user at most: the database decides which of
-- two reviewers opening a case at once gets it.
CREATE TABLE case_holds (
    user_public_id TEXT    PRIMARY KEY,
    holder         TEXT    NOT NULL,
    expires_at     INTEGER NOT NULL
);

-- A user's or a job's audit trail (the console's timelines) without a scan of the whole log.
CREATE INDEX audit_log_target ON audit_log (target, id);
