-- Seed 003 step 4: accounts, subscription tiers (plans), subscriptions, invoices, the payments
-- ledger, the provider's customer of each user, and each partner's payment provider settings.
-- Money is integer minor units beside its ISO 4217 code; the exponent comes from the code.

-- A user's account. The first is opened by CIP provisioning (`is_primary`, one per user, the
-- database enforces it); more by the user (`POST /accounts`).
CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id   TEXT    NOT NULL UNIQUE,
    partner_id  INTEGER NOT NULL REFERENCES partners (id),
    user_id     INTEGER NOT NULL REFERENCES users (id),
    is_primary  INTEGER NOT NULL DEFAULT 0 CHECK (is_primary IN (0, 1)),
    status      TEXT    NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    opened_by   TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX accounts_primary ON accounts (user_id) WHERE is_primary = 1;
CREATE INDEX accounts_user ON accounts (partner_id, user_id);

-- A partner's subscription tier (`subscriptionDetailsId`). Archived tiers are no longer offered;
-- their subscriptions go on.
CREATE TABLE plans (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id    TEXT    NOT NULL UNIQUE,
    partner_id   INTEGER NOT NULL REFERENCES partners (id),
    name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description  TEXT,
    amount_minor INTEGER NOT NULL CHECK (amount_minor >= 0),
    currency     TEXT    NOT NULL CHECK (length(currency) = 3),
    interval     TEXT    NOT NULL CHECK (interval IN ('month', 'year')),
    trial_days   INTEGER NOT NULL DEFAULT 0 CHECK (trial_days BETWEEN 0 AND 730),
    archived_at  INTEGER,
    created_at   INTEGER NOT NULL
);
CREATE INDEX plans_partner ON plans (partner_id);

-- One account's subscription to one tier. Periods count from `anchor_at` (period 0 is the
-- trial); one live (not canceled) subscription per account and tier, enforced here.
CREATE TABLE subscriptions (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id            TEXT    NOT NULL UNIQUE,
    partner_id           INTEGER NOT NULL REFERENCES partners (id),
    user_id              INTEGER NOT NULL REFERENCES users (id),
    account_id           INTEGER NOT NULL REFERENCES accounts (id),
    plan_id              INTEGER NOT NULL REFERENCES plans (id),
    status               TEXT    NOT NULL CHECK (status IN ('trialing', 'incomplete', 'active', 'past_due', 'canceled')),
    anchor_at            INTEGER NOT NULL,
    period               INTEGER NOT NULL CHECK (period >= 0),
    period_start         INTEGER NOT NULL,
    period_end           INTEGER NOT NULL,
    cancel_at_period_end INTEGER NOT NULL DEFAULT 0 CHECK (cancel_at_period_end IN (0, 1)),
    canceled_at          INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE UNIQUE INDEX subscriptions_live ON subscriptions (account_id, plan_id) WHERE status <> 'canceled';
CREATE INDEX subscriptions_user ON subscriptions (partner_id, user_id);
CREATE INDEX subscriptions_renewal ON subscriptions (status, period_end);

-- One billing period's invoice. `attempts` counts charge attempts; `charging_attempt` is the
-- one in flight (claimed, its outcome not yet recorded) until `charging_until`: a concurrent
-- pay finds it claimed, and a pay after a crash finishes that same attempt (same provider
-- idempotency key) before it makes another. `charging_ref` is the provider's payment of an
-- attempt waiting on the customer (3-D Secure) or the bank; its webhook settles it. An attempt
-- is resent exactly as first sent: `charging_method` and `charging_off_session` are kept with it.
CREATE TABLE invoices (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id        TEXT    NOT NULL UNIQUE,
    partner_id       INTEGER NOT NULL REFERENCES partners (id),
    user_id          INTEGER NOT NULL REFERENCES users (id),
    subscription_id  INTEGER NOT NULL REFERENCES subscriptions (id),
    period           INTEGER NOT NULL,
    period_start     INTEGER NOT NULL,
    period_end       INTEGER NOT NULL,
    amount_due       INTEGER NOT NULL CHECK (amount_due >= 0),
    currency         TEXT    NOT NULL CHECK (length(currency) = 3),
    status           TEXT    NOT NULL CHECK (status IN ('open', 'paid', 'void')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    charging_attempt INTEGER,
    charging_method  TEXT,
    charging_until   INTEGER,
    charging_ref     TEXT,
    charging_off_session INTEGER NOT NULL DEFAULT 0 CHECK (charging_off_session IN (0, 1)),
    created_at       INTEGER NOT NULL,
    paid_at          INTEGER,
    voided_at        INTEGER,
    UNIQUE (subscription_id, period)
);
CREATE INDEX invoices_user ON invoices (partner_id, user_id);

-- The payments ledger: append-only (the triggers below refuse changes). An invoice's amount
-- paid is the sum of its charges less its refunds; one charge per invoice, enforced here, so
-- two racing payments cannot both be recorded. Money the provider took that no open invoice
-- could take (a second charge) is kept as `unapplied`, for an operator to refund: never dropped.
CREATE TABLE ledger_entries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id       TEXT    NOT NULL UNIQUE,
    partner_id      INTEGER NOT NULL REFERENCES partners (id),
    user_id         INTEGER NOT NULL REFERENCES users (id),
    invoice_id      INTEGER NOT NULL REFERENCES invoices (id),
    kind            TEXT    NOT NULL CHECK (kind IN ('charge', 'failure', 'refund', 'unapplied')),
    amount_minor    INTEGER NOT NULL CHECK (amount_minor >= 0),
    currency        TEXT    NOT NULL CHECK (length(currency) = 3),
    attempt         INTEGER NOT NULL,
    provider        TEXT    NOT NULL CHECK (provider IN ('stripe', 'sandbox')),
    provider_ref    TEXT,
    payment_method  TEXT,
    failure_code    TEXT,
    decline_code    TEXT,
    failure_message TEXT,
    off_session     INTEGER NOT NULL DEFAULT 0 CHECK (off_session IN (0, 1)),
    created_at      INTEGER NOT NULL,
    UNIQUE (invoice_id, attempt, kind)
);
CREATE UNIQUE INDEX ledger_one_charge ON ledger_entries (invoice_id) WHERE kind = 'charge';
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;

-- The provider's customer of a user, and the method renewals charge (saved on that customer).
CREATE TABLE payment_customers (
    user_id        INTEGER PRIMARY KEY REFERENCES users (id),
    partner_id     INTEGER NOT NULL REFERENCES partners (id),
    provider       TEXT    NOT NULL CHECK (provider IN ('stripe', 'sandbox')),
    customer_id    TEXT    NOT NULL,
    payment_method TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- A partner's payment provider. Secrets sealed with the key-encryption key (AAD bound to the
-- column and partner). No row: sandbox partners use the built-in sandbox provider, live
-- partners cannot take payments.
CREATE TABLE partner_payments (
    partner_id     INTEGER PRIMARY KEY REFERENCES partners (id),
    provider       TEXT    NOT NULL CHECK (provider IN ('stripe', 'sandbox')),
    secret_key     BLOB,
    webhook_secret BLOB,
    updated_at     INTEGER NOT NULL
);

-- Stripe's webhook events as received (verified), once each.
CREATE TABLE payment_events (
    partner_id  INTEGER NOT NULL REFERENCES partners (id),
    event_id    TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    raw_body    TEXT    NOT NULL,
    effect      TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (partner_id, event_id)
);
