-- Archive import (`ingest --archive`, `archive_before`): past mail is taken as history. Its tasks are created already
-- done and marked archived, so an import of years of mail leaves no overdue task and no reminder; the mail itself is
-- marked so that nothing is announced about it later (no admin notice of its quarantine). 0 everywhere else.
ALTER TABLE tasks ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
