-- Tax-calendar tasks (SQLite): a task may now come from the tax calendar instead of a mail, so `tasks.message`
-- becomes nullable, and `event` + `period` name the obligation. SQLite cannot drop a NOT NULL constraint, so the
-- table is rebuilt (create, copy, drop, rename, re-index).
--
-- The migration runs inside a transaction with foreign keys on (sqlx's SQLite migrator always opens one, and
-- `PRAGMA foreign_keys` is ignored inside it). Dropping `tasks` while outbox rows point at it would violate
-- their foreign key, so the outbox is set aside in a plain copy, dropped before `tasks` and recreated exactly as
-- 0001 defines it afterwards, with every id kept.

CREATE TABLE tasks_rebuilt (
    id         INTEGER PRIMARY KEY,
    message    INTEGER REFERENCES messages (id),
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
    event      TEXT,
    period     TEXT,
    UNIQUE (message, step)
) STRICT;
INSERT INTO tasks_rebuilt (id, message, case_id, client_inn, step, title, role, assignee, due, priority, status,
                           provenance, created_at)
SELECT id, message, case_id, client_inn, step, title, role, assignee, due, priority, status, provenance, created_at
FROM tasks;

CREATE TABLE outbox_saved AS SELECT * FROM outbox;
DROP TABLE outbox;
DROP TABLE tasks;
ALTER TABLE tasks_rebuilt RENAME TO tasks;
CREATE INDEX tasks_by_assignee ON tasks (assignee, status, due);
-- One task per client + obligation + period, however often generation runs. Mail tasks have NULL event/period,
-- and NULLs are distinct in a unique index, so they never collide here.
CREATE UNIQUE INDEX tasks_calendar_key ON tasks (client_inn, event, period);

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
INSERT INTO outbox (id, kind, task, message, recipient, subject, body, status, attempts, last_error, not_before,
                    created_at, sent_at)
SELECT id, kind, task, message, recipient, subject, body, status, attempts, last_error, not_before, created_at,
       sent_at
FROM outbox_saved;
DROP TABLE outbox_saved;
CREATE INDEX outbox_pending ON outbox (status, not_before);
