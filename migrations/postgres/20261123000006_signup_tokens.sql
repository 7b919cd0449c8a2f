-- Seed 003: self sign-up with an e-mailed code, passwords, and end-user OAuth tokens.

-- Argon2id PHC string; NULL for users who have no password (partner-registered users).
ALTER TABLE users ADD COLUMN password_hash TEXT;
-- Seed 003's `userType`.
ALTER TABLE users ADD COLUMN user_role TEXT CHECK (user_role IN ('CUSTOMER', 'BUSINESS'));

-- One pending sign-up per partner and (lower-cased) e-mail: the latest step 1 replaces it.
-- `kind = 'existing'` marks a step 1 for an address that already has an account: the mail says
-- so and no code can complete it, while the answer and the bookkeeping look the same.
CREATE TABLE pending_signups (
    partner_id    BIGINT NOT NULL REFERENCES partners (id),
    email_key     TEXT   NOT NULL,
    email         TEXT   NOT NULL,
    kind          TEXT   NOT NULL CHECK (kind IN ('new', 'existing')),
    password_hash TEXT   NOT NULL,
    user_role     TEXT   NOT NULL CHECK (user_role IN ('CUSTOMER', 'BUSINESS')),
    code_hash     BYTEA  NOT NULL CHECK (length(code_hash) = 32),
    code_sent_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    -- Set by the step 2 that created the user; a replay of that step 2 answers for this user.
    user_id       BIGINT REFERENCES users (id),
    PRIMARY KEY (partner_id, email_key)
);

-- A refresh-token family: every token rotated from one sign-in. Revoking the family (logout,
-- or reuse of a rotated token, RFC 9700 §4.14.2) ends every token of it, access tokens included
-- (they carry the family id as `sid`).
CREATE TABLE token_families (
    id            TEXT   PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (id),
    partner_id    BIGINT NOT NULL REFERENCES partners (id),
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoke_reason TEXT
);
CREATE INDEX token_families_user ON token_families (user_id);

-- A refresh token is `ort_<id>_<secret>`; only the id and the SHA-256 of the whole token are kept.
CREATE TABLE refresh_tokens (
    id          TEXT   PRIMARY KEY,
    family_id   TEXT   NOT NULL REFERENCES token_families (id),
    secret_hash BYTEA  NOT NULL CHECK (length(secret_hash) = 32),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    -- Set when it was exchanged for its successor: presenting it again is reuse.
    used_at     BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
