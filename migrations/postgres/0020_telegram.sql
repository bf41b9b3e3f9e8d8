-- The Telegram sink (PostgreSQL). Append-only: never edit a shipped migration.
--
-- A Telegram sink also carries notices to one person that belong to no single task (the daily digest) or to a task
-- and one of several people (an escalation rung's message to each person it names): `task` may be NULL for them,
-- `recipient` names the person (login or e-mail of the directory) and `body` holds the text as queued. Task events
-- keep `recipient` and `body` NULL.
ALTER TABLE sink_outbox ALTER COLUMN task DROP NOT NULL;
ALTER TABLE sink_outbox ADD COLUMN recipient TEXT;
ALTER TABLE sink_outbox ADD COLUMN body TEXT;
