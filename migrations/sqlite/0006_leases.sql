-- Which instance works which IMAP mailbox (SQLite). Append-only: never edit a shipped migration.
-- A row is a lease: `holder` (an instance's id) may work `mailbox` until `expires_at` (milliseconds since the
-- Unix epoch). Taken and renewed by one atomic upsert that succeeds only when the lease is free, expired or
-- already the caller's; deleted by its holder on shutdown.

CREATE TABLE mailbox_leases (
    mailbox    TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
