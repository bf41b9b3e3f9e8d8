-- The mail log's search index is written once per transaction, not once per mail.
--
-- FTS5 writes what it holds in memory to a new segment of its index at every savepoint, and SQLite opens one for
-- every statement of a transaction that may need undoing (an INSERT with a trigger is one): with the index kept by
-- the messages' own triggers, a batch of 64 mails wrote 64 segments or more (a demand's case link, an UPDATE, one
-- more), and FTS5 spent the batch merging them again — a third of the SQLite thread's time in `bench/imap.sh`.
-- The triggers now only note which mail is to be indexed; the batch's writer indexes all of them in one statement
-- before it commits (`store::index_queued_mail`), in the same transaction: one segment per batch, and a mail is
-- searchable when it is committed, as before. A transaction that does not drain the queue leaves its rows there,
-- to be indexed by the next one that does: late, never lost.
CREATE TABLE messages_search_queue (
    id INTEGER PRIMARY KEY
);

DROP TRIGGER messages_search_insert;
DROP TRIGGER messages_search_update;
DROP TRIGGER messages_search_delete;

CREATE TRIGGER messages_search_insert AFTER INSERT ON messages BEGIN
    INSERT OR IGNORE INTO messages_search_queue (id) VALUES (new.id);
END;

-- A mail indexed before leaves the index until its new text is written; one still queued is indexed as it is then.
CREATE TRIGGER messages_search_update
AFTER UPDATE OF subject, from_addr, client_inn, demand_number, case_id ON messages
WHEN NOT EXISTS (SELECT 1 FROM messages_search_queue WHERE id = old.id) BEGIN
    DELETE FROM messages_search WHERE rowid = old.id;
    INSERT INTO messages_search_queue (id) VALUES (new.id);
END;

-- A mail deleted leaves the index, or the queue if it was not indexed yet (the rowid list is empty then).
CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
    DELETE FROM messages_search
    WHERE rowid IN (SELECT old.id WHERE NOT EXISTS (SELECT 1 FROM messages_search_queue WHERE id = old.id));
    DELETE FROM messages_search_queue WHERE id = old.id;
END;
