-- The web view (SQLite): passwords, sessions, failed sign-ins, calendar-feed tokens, and indexes for the
-- auditor's filters over a large log. Append-only: never edit a shipped migration.

-- A person's password as an argon2 PHC string; set with `taxinbox user set-password EMAIL`.
CREATE TABLE web_users (
    email         TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;

-- Sessions by the SHA-256 of their random id (the id itself lives only in the browser's cookie).
CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
) STRICT;
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);

-- Failed sign-ins, counted per account and per address over a window (rate limit across instances).
CREATE TABLE web_login_failures (
    id      INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    ip      TEXT NOT NULL,
    at      TEXT NOT NULL
) STRICT;
CREATE INDEX web_login_failures_by_account ON web_login_failures (account, at);
CREATE INDEX web_login_failures_by_ip ON web_login_failures (ip, at);

-- The secret of each person's ICS feed (`/ics/<token>.ics`); regenerating replaces it.
CREATE TABLE web_ics_tokens (
    email      TEXT PRIMARY KEY,
    token      TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
) STRICT;

-- The auditor's filters and paging over the processed-mail log.
CREATE INDEX messages_by_received ON messages (received_date, id);
CREATE INDEX messages_by_client ON messages (client_inn, id);
CREATE INDEX messages_by_category ON messages (category, id);
CREATE INDEX messages_by_mailbox ON messages (mailbox, id);
CREATE INDEX messages_by_mailbox_received ON messages (mailbox, received_date);
CREATE INDEX tasks_by_message ON tasks (message);
