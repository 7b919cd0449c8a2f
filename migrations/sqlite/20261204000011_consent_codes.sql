-- Seed 002's OtpPrivacyMissing / OtpContractMissing: the user confirms a consent with a one-time
-- code sent by SMS or e-mail. Partners that collect consents themselves keep posting booleans.
ALTER TABLE partners ADD COLUMN consent_confirmation TEXT NOT NULL DEFAULT 'partner'
    CHECK (consent_confirmation IN ('partner', 'otp'));

-- The code waiting for one consent of one user (a new send replaces it). Only a digest of the
-- code is kept; it lives minutes and allows a few attempts.
CREATE TABLE consent_codes (
    user_id          INTEGER NOT NULL REFERENCES users (id),
    consent          TEXT    NOT NULL CHECK (consent IN ('privacy', 'contract')),
    partner_id       INTEGER NOT NULL REFERENCES partners (id),
    channel          TEXT    NOT NULL CHECK (channel IN ('sms', 'email')),
    sent_to          TEXT    NOT NULL,
    document_version TEXT    NOT NULL,
    code_hash        BLOB    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    sent_at          INTEGER NOT NULL,
    -- Codes sent for this consent since window_started_at (a day): a fresh code every minute
    -- must not become unlimited guesses.
    sends            INTEGER NOT NULL,
    window_started_at INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    PRIMARY KEY (user_id, consent)
);

-- How each consent was given: by code (when, to which masked address, which document version)
-- or as the partner's statement. Append-only.
CREATE TABLE consent_evidence (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL REFERENCES users (id),
    partner_id       INTEGER NOT NULL REFERENCES partners (id),
    consent          TEXT    NOT NULL CHECK (consent IN ('privacy', 'contract')),
    method           TEXT    NOT NULL CHECK (method IN ('otp', 'partner')),
    channel          TEXT,
    sent_to          TEXT,
    document_version TEXT,
    code_sent_at     INTEGER,
    given_at         INTEGER NOT NULL,
    actor            TEXT    NOT NULL
);
CREATE INDEX consent_evidence_user ON consent_evidence (user_id, id);
CREATE TRIGGER consent_evidence_no_update BEFORE UPDATE ON consent_evidence BEGIN
    SELECT RAISE(ABORT, 'consent_evidence is append-only');
END;
CREATE TRIGGER consent_evidence_no_delete BEFORE DELETE ON consent_evidence BEGIN
    SELECT RAISE(ABORT, 'consent_evidence is append-only');
END;
