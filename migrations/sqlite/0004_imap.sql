-- Per IMAP mailbox: how far taxinbox has read (SQLite). Append-only: never edit a shipped migration.
-- `uidvalidity` and `last_uid` are the server's 32-bit unsigned numbers; a changed UIDVALIDITY means the UIDs
-- start again and `last_uid` no longer applies. Advanced in the same transaction as the mail it covers.

CREATE TABLE imap_state (
    mailbox     TEXT PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL
) STRICT;
