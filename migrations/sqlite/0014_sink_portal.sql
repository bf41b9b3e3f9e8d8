-- Bitrix24 against a real portal (SQLite). Append-only: never edit a shipped migration.
--
-- The deadline last sent to the tracker for a task, so an update sends `DEADLINE` only when the legal deadline
-- changed and never overwrites one an accountant moved by hand.
ALTER TABLE sink_tasks ADD COLUMN due TEXT;

-- A tracker's task that was deleted there or that the webhook's owner can no longer see: the event that found it,
-- what was done (`recreated`: a new task was added, `dropped`: the task's later events are not sent), and when.
-- `taxinbox sinks status` lists them; the queue never waits for them.
CREATE TABLE sink_lost_tasks (
    id         INTEGER PRIMARY KEY,
    sink       TEXT NOT NULL,
    task       INTEGER NOT NULL REFERENCES tasks (id),
    remote_id  TEXT NOT NULL,
    event_key  TEXT NOT NULL,
    reason     TEXT NOT NULL,
    action     TEXT NOT NULL,
    new_remote_id TEXT,
    at         TEXT NOT NULL
) STRICT;
CREATE INDEX sink_lost_tasks_by_task ON sink_lost_tasks (sink, task);

-- The tracker's users found by e-mail (Bitrix24 `user.get` by EMAIL, active users only), refreshed daily;
-- `user_id` is NULL for an accountant the portal does not know (so the lookup is not repeated every pass).
CREATE TABLE sink_users (
    sink       TEXT NOT NULL,
    email      TEXT NOT NULL,
    user_id    INTEGER,
    checked_at TEXT NOT NULL,
    PRIMARY KEY (sink, email)
) STRICT;
