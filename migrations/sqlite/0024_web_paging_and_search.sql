-- The web view pages its lists in SQL over a firm's whole history (issue #16: 50 ms at 100,000 mails).
-- The task list by status and due date; by client, also counting per client among some people from the index alone.
CREATE INDEX tasks_by_status_due ON tasks (status, due);
CREATE INDEX tasks_by_client ON tasks (client_inn, status, assignee);
CREATE INDEX messages_by_case ON messages (case_id);
-- The log's count under its most used filter pair (a category in a state) read from the index alone.
CREATE INDEX messages_by_category_status ON messages (category, status, id);

-- The mail log's search: a trigram full-text index over each mail's subject, sender, client INN, its own demand
-- number and its case's number. Contentless (the text lives in `messages`); triggers keep it in step.
CREATE VIRTUAL TABLE messages_search USING fts5 (
    text, content = '', contentless_delete = 1, tokenize = 'trigram'
);

INSERT INTO messages_search (rowid, text)
SELECT m.id,
       m.subject || ' ' || m.from_addr || ' ' || coalesce(m.client_inn, '') || ' ' ||
       coalesce(m.demand_number, '') || ' ' || coalesce(k.number, '')
FROM messages m LEFT JOIN cases k ON k.id = m.case_id;

CREATE TRIGGER messages_search_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_search (rowid, text)
    VALUES (new.id,
            new.subject || ' ' || new.from_addr || ' ' || coalesce(new.client_inn, '') || ' ' ||
            coalesce(new.demand_number, '') || ' ' ||
            coalesce((SELECT number FROM cases WHERE id = new.case_id), ''));
END;

CREATE TRIGGER messages_search_update
AFTER UPDATE OF subject, from_addr, client_inn, demand_number, case_id ON messages BEGIN
    DELETE FROM messages_search WHERE rowid = old.id;
    INSERT INTO messages_search (rowid, text)
    VALUES (new.id,
            new.subject || ' ' || new.from_addr || ' ' || coalesce(new.client_inn, '') || ' ' ||
            coalesce(new.demand_number, '') || ' ' ||
            coalesce((SELECT number FROM cases WHERE id = new.case_id), ''));
END;

CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
    DELETE FROM messages_search WHERE rowid = old.id;
END;
