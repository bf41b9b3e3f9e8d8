-- Task sinks (SQLite): the firm's task tracker (a signed webhook, Bitrix24) hears of every task event.
-- Append-only: never edit a shipped migration.
--
-- `sinks` is the registry of configured sinks (written when taxinbox opens its store with a configuration), so the
-- SQL that queues an event in the task's own transaction fans it out to every active sink without the settings.
CREATE TABLE sinks (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1,
    registered_at TEXT NOT NULL
) STRICT;

-- One row per (sink, event): `created`, `linked` (a mail joined the task's case), `escalated`. `event_key` names the
-- event (`created:<task>`, `linked:<task>:<message>`, `escalated:<task>:<rung>`) and is the stable delivery id a
-- receiver deduplicates by. Delivered strictly in id order per (sink, task).
CREATE TABLE sink_outbox (
    id           INTEGER PRIMARY KEY,
    sink         TEXT NOT NULL,
    task         INTEGER NOT NULL REFERENCES tasks (id),
    event        TEXT NOT NULL,
    event_key    TEXT NOT NULL,
    message      INTEGER REFERENCES messages (id),
    status       TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    not_before   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    delivered_at TEXT,
    UNIQUE (sink, event_key)
) STRICT;
CREATE INDEX sink_outbox_pending ON sink_outbox (status, not_before);
CREATE INDEX sink_outbox_by_task ON sink_outbox (sink, task, id);

-- The tracker's own id of a task (a Bitrix24 task id), so later events update it and a retry never creates a
-- second one.
CREATE TABLE sink_tasks (
    sink       TEXT NOT NULL,
    task       INTEGER NOT NULL REFERENCES tasks (id),
    remote_id  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (sink, task)
) STRICT;
