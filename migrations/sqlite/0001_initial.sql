-- The initial schema of taxinbox (SQLite). Append-only: never edit a shipped migration.
-- Dates are ISO text (YYYY-MM-DD), instants RFC 3339 text in UTC, booleans 0/1.

CREATE TABLE accountants (
    email   TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    role    TEXT NOT NULL,
    manager TEXT
) STRICT;

CREATE TABLE clients (
    inn               TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    kpp               TEXT,
    regime            TEXT NOT NULL,
    has_employees     INTEGER NOT NULL,
    vat_payer         INTEGER NOT NULL,
    accountant        TEXT NOT NULL,
    backup_accountant TEXT,
    region            TEXT,
    attributes        TEXT NOT NULL DEFAULT '',
    updated_at        TEXT NOT NULL
) STRICT;

-- Addresses ('x@y.example') and whole domains ('@y.example') a client writes from.
CREATE TABLE client_contacts (
    client_inn TEXT NOT NULL REFERENCES clients (inn) ON DELETE CASCADE,
    address    TEXT NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (client_inn, address)
) STRICT;
CREATE INDEX client_contacts_by_address ON client_contacts (address);

CREATE TABLE absences (
    email      TEXT NOT NULL,
    date_from  TEXT NOT NULL,
    date_to    TEXT NOT NULL,
    substitute TEXT,
    PRIMARY KEY (email, date_from)
) STRICT;

-- Raw mail, content-addressed. `content` may be purged after the retention period; the hash stays.
CREATE TABLE raw_mail (
    sha256    TEXT PRIMARY KEY,
    size      INTEGER NOT NULL,
    content   BLOB,
    stored_at TEXT NOT NULL
) STRICT;

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    sha256        TEXT NOT NULL UNIQUE REFERENCES raw_mail (sha256),
    message_id    TEXT,
    source        TEXT NOT NULL,
    mailbox       TEXT NOT NULL,
    fetched_at    TEXT NOT NULL,
    received_date TEXT NOT NULL,
    from_addr     TEXT NOT NULL DEFAULT '',
    subject       TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL,
    category      TEXT,
    kind          TEXT,
    client_inn    TEXT,
    demand_number TEXT,
    demand_date   TEXT,
    demand_sent   TEXT,
    case_id       INTEGER,
    joins         TEXT,
    rule          TEXT,
    ruleset       TEXT,
    reason        TEXT,
    error         TEXT,
    facts         TEXT NOT NULL DEFAULT '{}',
    processed_at  TEXT NOT NULL
) STRICT;
CREATE INDEX messages_by_message_id ON messages (message_id);
CREATE INDEX messages_by_status ON messages (status);

-- One case per demand: the same client + demand number + demand date is the same case.
CREATE TABLE cases (
    id            INTEGER PRIMARY KEY,
    client_inn    TEXT NOT NULL,
    number_key    TEXT NOT NULL,
    number        TEXT NOT NULL,
    demand_date   TEXT NOT NULL,
    kind          TEXT,
    first_message INTEGER NOT NULL REFERENCES messages (id),
    created_at    TEXT NOT NULL,
    UNIQUE (client_inn, number_key, demand_date)
) STRICT;

CREATE TABLE tasks (
    id         INTEGER PRIMARY KEY,
    message    INTEGER NOT NULL REFERENCES messages (id),
    case_id    INTEGER REFERENCES cases (id),
    client_inn TEXT,
    step       TEXT NOT NULL,
    title      TEXT NOT NULL,
    role       TEXT NOT NULL,
    assignee   TEXT,
    due        TEXT NOT NULL,
    priority   TEXT NOT NULL DEFAULT 'normal',
    status     TEXT NOT NULL DEFAULT 'open',
    provenance TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    UNIQUE (message, step)
) STRICT;
CREATE INDEX tasks_by_assignee ON tasks (assignee, status, due);

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,
    task       INTEGER REFERENCES tasks (id),
    message    INTEGER REFERENCES messages (id),
    recipient  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'pending',
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    not_before TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at    TEXT
) STRICT;
CREATE INDEX outbox_pending ON outbox (status, not_before);

-- Where a mail came from (a file, a Maildir entry, an IMAP mailbox/UIDVALIDITY/UID), so re-delivery is recognised.
CREATE TABLE source_refs (
    source  TEXT PRIMARY KEY,
    message INTEGER NOT NULL REFERENCES messages (id)
) STRICT;

-- The processed-mail log: a hash chain. `audit_head` holds the newest link; appending locks it.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    event     TEXT NOT NULL,
    message   INTEGER,
    sha256    TEXT,
    payload   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
) STRICT;
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, 'genesis');

CREATE TABLE rulesets (
    version   TEXT PRIMARY KEY,
    loaded_at TEXT NOT NULL,
    files     TEXT NOT NULL
) STRICT;
