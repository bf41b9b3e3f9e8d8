-- The processed-mail log as auditors read it (SQLite). Append-only: never edit a shipped migration.
-- Indexes only: `audit show` gathers every entry and notification about one mail, `audit purge` finds raw mail
-- older than the retention period; without these both read whole tables.
CREATE INDEX audit_log_by_message ON audit_log (message);
CREATE INDEX audit_log_by_event ON audit_log (event);
CREATE INDEX outbox_by_message ON outbox (message);
CREATE INDEX raw_mail_by_stored_at ON raw_mail (stored_at);
