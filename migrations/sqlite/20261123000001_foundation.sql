-- Partners (tenants), their credentials, and the JWT signing keys.
-- Timestamps are integer milliseconds since the Unix epoch (UTC) on both backends.

CREATE TABLE partners (
    id          INTEGER PRIMARY KEY AUTOINCREMENT CHECK (id BETWEEN 1 AND 2147483647),
    name        TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    environment TEXT    NOT NULL CHECK (environment IN ('sandbox', 'live')),
    created_at  INTEGER NOT NULL
);

-- An API key is `onb_<env>_<id>_<secret>`; only the id and the SHA-256 of the whole key are kept.
CREATE TABLE api_keys (
    id          TEXT    PRIMARY KEY,
    partner_id  INTEGER NOT NULL REFERENCES partners (id),
    secret_hash BLOB    NOT NULL CHECK (length(secret_hash) = 32),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX api_keys_partner ON api_keys (partner_id);

CREATE TABLE oauth_clients (
    client_id   TEXT    PRIMARY KEY,
    partner_id  INTEGER NOT NULL REFERENCES partners (id),
    secret_hash BLOB    NOT NULL CHECK (length(secret_hash) = 32),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX oauth_clients_partner ON oauth_clients (partner_id);

-- `is_current` is 1 on the one key that signs and NULL on the others: the UNIQUE constraint makes
-- "exactly one signing key" a database fact even when several nodes start at once.
CREATE TABLE signing_keys (
    kid          TEXT    PRIMARY KEY,
    algorithm    TEXT    NOT NULL CHECK (algorithm = 'EdDSA'),
    private_key  BLOB    NOT NULL,
    public_key   BLOB    NOT NULL CHECK (length(public_key) = 32),
    created_at   INTEGER NOT NULL,
    is_current   INTEGER UNIQUE CHECK (is_current = 1),
    verify_until INTEGER
);

-- One row at most: the first-start sandbox partner is created by whoever inserts it.
CREATE TABLE bootstrap (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    partner_id INTEGER NOT NULL REFERENCES partners (id),
    created_at INTEGER NOT NULL
);
