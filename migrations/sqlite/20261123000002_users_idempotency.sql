-- Users: one row per end user, whatever surface created it (DESIGN.md §2).
-- `id` is the int32 of seed 001; running out of it is an error, never a wrap-around.
CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT CHECK (id BETWEEN 1 AND 2147483647),
    public_id       TEXT    NOT NULL UNIQUE CHECK (public_id LIKE 'usr:%'),
    partner_id      INTEGER NOT NULL REFERENCES partners (id),
    email           TEXT,
    -- seed 001's `additionalData`, kept exactly as the partner sent it (JSON text).
    additional_data TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX users_partner ON users (partner_id, id);

-- Idempotency-Key records (IETF httpapi idempotency-key draft), scoped per partner.
CREATE TABLE idempotency_keys (
    partner_id       INTEGER NOT NULL REFERENCES partners (id),
    idempotency_key  TEXT    NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    fingerprint      BLOB    NOT NULL CHECK (length(fingerprint) = 32),
    state            TEXT    NOT NULL CHECK (state IN ('in_flight', 'completed')),
    locked_until     INTEGER NOT NULL,
    response_status  INTEGER,
    response_headers TEXT,
    response_body    BLOB,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    PRIMARY KEY (partner_id, idempotency_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
