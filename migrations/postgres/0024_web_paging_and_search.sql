-- The web view pages its lists in SQL over a firm's whole history (issue #16: 50 ms at 100,000 mails).
-- The task list by status and due date; by client, also counting per client among some people from the index alone.
CREATE INDEX tasks_by_status_due ON tasks (status, due);
CREATE INDEX tasks_by_client ON tasks (client_inn, status, assignee);
CREATE INDEX messages_by_case ON messages (case_id);
-- The log's count under its most used filter pair (a category in a state) read from the index alone.
CREATE INDEX messages_by_category_status ON messages (category, status, id);

-- The mail log's search (`LIKE '%…%'` over subject, sender, client INN, demand number and the case's number)
-- answered from trigram indexes. pg_trgm ships with PostgreSQL and is a trusted extension: the database's owner
-- may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX messages_search_trgm ON messages
    USING gin (subject gin_trgm_ops, from_addr gin_trgm_ops, client_inn gin_trgm_ops, demand_number gin_trgm_ops);
CREATE INDEX cases_number_trgm ON cases USING gin (number gin_trgm_ops);
