-- The processed-mail log keyed with HMAC-SHA-256 (postgres). Append-only: never edit a shipped migration.
-- `mac` is HMAC-SHA-256 of the entry's hash under the key kept outside the database (`[audit] key_file`). Entries
-- written before the key existed have none and verify with the plain SHA-256 chain alone; so does every entry
-- when `audit verify` runs without the key.
ALTER TABLE audit_log ADD COLUMN mac TEXT;
