-- People leave, sign-ins are throttled, feed tokens are hashed (PostgreSQL). Append-only: never edit a shipped migration.

-- A person or client missing from a re-imported register (or disabled with `taxinbox user disable`) stays, with
-- their history, but is no longer part of the register the service works with.
ALTER TABLE accountants ADD COLUMN active BIGINT NOT NULL DEFAULT 1;
ALTER TABLE accountants ADD COLUMN deactivated_at TEXT;
ALTER TABLE clients ADD COLUMN active BIGINT NOT NULL DEFAULT 1;
ALTER TABLE clients ADD COLUMN deactivated_at TEXT;

-- Calendar-feed tokens by the SHA-256 of the token (the token itself is shown once, at creation). The plain-text
-- tokens of `web_ics_tokens` are dropped: their owners create a new link.
DROP TABLE web_ics_tokens;
CREATE TABLE web_feed_tokens (
    email      TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

-- Sign-in attempts per key (`account:<sha256 of the typed address>`, `ip:<address>`): claimed atomically before a
-- password is checked; past the limit each further attempt waits longer (`not_before_ms`, Unix milliseconds).
CREATE TABLE web_sign_in_throttle (
    key           TEXT PRIMARY KEY,
    failures      BIGINT NOT NULL,
    not_before_ms BIGINT NOT NULL,
    last_at_ms    BIGINT NOT NULL
);
