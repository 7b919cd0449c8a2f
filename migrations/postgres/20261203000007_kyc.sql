-- Seed 003 step 3: identity verification (KYC) as one more CIP check, the partners' provider
-- settings with their secrets sealed by the key-encryption key, applicants, and every provider
-- webhook as received.

-- Whether this user's CIP needs a passed KYC review: always for seed-003 sign-ups, a partner
-- setting for seed-002 prospects (fixed when the user enters CIP).
ALTER TABLE users ADD COLUMN kyc_required BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE cip_checks DROP CONSTRAINT cip_checks_check_name_check;
ALTER TABLE cip_checks ADD CONSTRAINT cip_checks_check_name_check
    CHECK (check_name IN ('personal', 'address', 'email', 'phone', 'sanctions', 'kyc'));

-- A partner's KYC settings. The three secrets are sealed (XChaCha20-Poly1305 under the
-- key-encryption key, bound to their column and partner); `provider = 'sandbox'` is the built-in
-- simulated provider, which needs only the webhook secret it signs with.
CREATE TABLE partner_kyc (
    partner_id             BIGINT  PRIMARY KEY REFERENCES partners (id),
    provider               TEXT    NOT NULL CHECK (provider IN ('sumsub', 'sandbox')),
    level_name             TEXT    NOT NULL CHECK (length(level_name) BETWEEN 1 AND 200),
    required_for_prospects BOOLEAN NOT NULL DEFAULT FALSE,
    app_token              BYTEA,
    secret_key             BYTEA,
    webhook_secret         BYTEA   NOT NULL,
    updated_at             BIGINT  NOT NULL
);

-- The provider's applicant of a user. `last_event_ms` is the `createdAtMs` of the latest
-- webhook applied: an older one arriving late changes nothing.
CREATE TABLE kyc_applicants (
    user_id        BIGINT  PRIMARY KEY REFERENCES users (id),
    partner_id     BIGINT  NOT NULL REFERENCES partners (id),
    applicant_id   TEXT    NOT NULL,
    level_name     TEXT    NOT NULL,
    review_status  TEXT,
    review_answer  TEXT CHECK (review_answer IN ('GREEN', 'RED')),
    reject_type    TEXT CHECK (reject_type IN ('FINAL', 'RETRY')),
    reject_labels  TEXT,
    last_event_ms  BIGINT  NOT NULL DEFAULT 0,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    UNIQUE (partner_id, applicant_id)
);

-- Every authenticated provider webhook (and every reconciliation reading), as received: the raw
-- body and how its digest was verified. Append-only; a retried delivery (same body) is stored once.
CREATE TABLE kyc_webhooks (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id    BIGINT  NOT NULL REFERENCES partners (id),
    user_id       BIGINT  REFERENCES users (id),
    source        TEXT    NOT NULL CHECK (source IN ('webhook', 'reconciliation', 'sandbox')),
    type          TEXT    NOT NULL,
    applicant_id  TEXT,
    created_at_ms BIGINT  NOT NULL,
    body_sha256   BYTEA   NOT NULL CHECK (length(body_sha256) = 32),
    raw_body      TEXT    NOT NULL,
    digest_alg    TEXT    NOT NULL,
    effect        TEXT    NOT NULL,
    received_at   BIGINT  NOT NULL,
    UNIQUE (partner_id, body_sha256)
);
CREATE INDEX kyc_webhooks_user ON kyc_webhooks (user_id);
