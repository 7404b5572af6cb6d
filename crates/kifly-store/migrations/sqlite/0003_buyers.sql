-- Buyers, one-time codes, buyer tokens, the mail outbox and feedback. Times are Unix milliseconds.

CREATE TABLE buyers (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE, -- normalised: trimmed, lower-case
    name            TEXT NOT NULL,
    default_address TEXT,                 -- JSON ShippingAddress
    verified_at     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- The one live code per e-mail address, stored as a keyed hash.
CREATE TABLE buyer_codes (
    email      TEXT PRIMARY KEY,
    code_hash  TEXT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE buyer_tokens (
    id         TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    buyer_id   TEXT NOT NULL REFERENCES buyers (id),
    api_key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Mail waiting to be sent. Written in the request's transaction, sent by a background worker.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until    BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Agent feedback and buyers' feature requests, for operators.
CREATE TABLE feedback (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('feedback', 'feature_request')),
    api_key_id TEXT NOT NULL,
    buyer_id   TEXT,
    category   TEXT NOT NULL,
    severity   TEXT NOT NULL,
    content    TEXT NOT NULL, -- JSON of the submitted fields
    created_at BIGINT NOT NULL
);
CREATE INDEX feedback_created ON feedback (created_at);

ALTER TABLE orders ADD COLUMN buyer_id TEXT;
CREATE INDEX orders_buyer ON orders (buyer_id, updated_at);
