-- Per IMAP mailbox: how far taxinbox has read (PostgreSQL). Append-only: never edit a shipped migration.
-- `uidvalidity` and `last_uid` are the server's 32-bit unsigned numbers (BIGINT: they do not fit INTEGER);
-- a changed UIDVALIDITY means the UIDs start again. Advanced in the same transaction as the mail it covers.

CREATE TABLE imap_state (
    mailbox     TEXT PRIMARY KEY,
    uidvalidity BIGINT NOT NULL,
    last_uid    BIGINT NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL
);
