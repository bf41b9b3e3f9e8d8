-- Notifications beyond "a task was assigned": digests, escalations and admin notices are queued at most once, so
-- each carries a key naming what it is about (`digest:<recipient>:<date>`, `escalation:<task>:<rung>`, …); NULL
-- for notifications that need no such guard (NULLs never collide in a UNIQUE index, on either engine).
-- Append-only: never edit a shipped migration.
ALTER TABLE outbox ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX outbox_dedupe ON outbox (dedupe_key);
-- The per-recipient daily cap counts what went to one address in the last day.
CREATE INDEX outbox_by_recipient ON outbox (recipient, status, sent_at);
