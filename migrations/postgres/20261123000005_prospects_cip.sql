-- Seed 002: the rest of a prospect's registration, its uniqueness rules, consents, and the
-- results of the CIP validators (DESIGN.md §3).

ALTER TABLE users ADD COLUMN phone TEXT;
-- Lower-cased e-mail: seeds 002 and 003 allow one user per address and partner. Seed 001 users
-- keep `email` only and never collide.
ALTER TABLE users ADD COLUMN email_key TEXT;
ALTER TABLE users ADD COLUMN gender TEXT CHECK (gender IN ('Male', 'Female', 'Other', 'None'));
ALTER TABLE users ADD COLUMN language TEXT CHECK (language IN ('en', 'es'));
ALTER TABLE users ADD COLUMN street TEXT;
ALTER TABLE users ADD COLUMN city TEXT;
-- ISO 3166-2, whatever short form the partner sent.
ALTER TABLE users ADD COLUMN state TEXT;
-- Google Maps Place Details JSON, as sent.
ALTER TABLE users ADD COLUMN place_detail TEXT;
ALTER TABLE users ADD COLUMN address_latitude DOUBLE PRECISION CHECK (address_latitude BETWEEN -90 AND 90);
ALTER TABLE users ADD COLUMN address_longitude DOUBLE PRECISION CHECK (address_longitude BETWEEN -180 AND 180);
ALTER TABLE users ADD COLUMN user_latitude DOUBLE PRECISION CHECK (user_latitude BETWEEN -90 AND 90);
ALTER TABLE users ADD COLUMN user_longitude DOUBLE PRECISION CHECK (user_longitude BETWEEN -180 AND 180);
-- Bumped by every correction: validator results of an older generation are ignored.
ALTER TABLE users ADD COLUMN cip_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN privacy_consent_at BIGINT;
ALTER TABLE users ADD COLUMN contract_consent_at BIGINT;

CREATE UNIQUE INDEX users_partner_phone ON users (partner_id, phone) WHERE phone IS NOT NULL;
CREATE UNIQUE INDEX users_partner_email_key ON users (partner_id, email_key) WHERE email_key IS NOT NULL;
CREATE INDEX users_cip_state ON users (cip_status, cip_detail, id) WHERE cip_status IS NOT NULL;

-- Which consents a partner's users must give before their account is opened: '', 'privacy',
-- 'contract' or 'privacy,contract'.
ALTER TABLE partners ADD COLUMN required_consents TEXT NOT NULL DEFAULT ''
    CHECK (required_consents IN ('', 'privacy', 'contract', 'privacy,contract'));

-- One row per validator and generation; the key makes a re-run of the same job a no-op.
CREATE TABLE cip_checks (
    user_id    BIGINT NOT NULL REFERENCES users (id),
    generation BIGINT NOT NULL,
    check_name TEXT   NOT NULL CHECK (check_name IN ('personal', 'address', 'email', 'phone', 'sanctions')),
    outcome    TEXT   NOT NULL CHECK (outcome IN ('pass', 'soft', 'review', 'fail', 'cleared')),
    detail     TEXT,
    reason     TEXT   NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (user_id, generation, check_name)
);
