-- The Telegram sink (SQLite). Append-only: never edit a shipped migration.
--
-- A Telegram sink also carries notices to one person that belong to no single task (the daily digest) or to a task
-- and one of several people (an escalation rung's message to each person it names): `task` may be NULL for them,
-- `recipient` names the person (login or e-mail of the directory) and `body` holds the text as queued. Task events
-- keep `recipient` and `body` NULL. SQLite cannot drop a NOT NULL, so the table is rebuilt with its rows.
CREATE TABLE sink_outbox_new (
    id           INTEGER PRIMARY KEY,
    sink         TEXT NOT NULL,
    task         INTEGER REFERENCES tasks (id),
    event        TEXT NOT NULL,
    event_key    TEXT NOT NULL,
    message      INTEGER REFERENCES messages (id),
    status       TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    not_before   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    delivered_at TEXT,
    recipient    TEXT,
    body         TEXT,
    UNIQUE (sink, event_key)
) STRICT;
INSERT INTO sink_outbox_new (id, sink, task, event, event_key, message, status, attempts, last_error, not_before,
    created_at, delivered_at)
SELECT id, sink, task, event, event_key, message, status, attempts, last_error, not_before, created_at, delivered_at
FROM sink_outbox;
DROP TABLE sink_outbox;
ALTER TABLE sink_outbox_new RENAME TO sink_outbox;
CREATE INDEX sink_outbox_pending ON sink_outbox (status, not_before);
CREATE INDEX sink_outbox_by_task ON sink_outbox (sink, task, id);
