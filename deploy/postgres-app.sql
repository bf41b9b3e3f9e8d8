-- The service role on PostgreSQL, with the processed-mail log insert-and-read only: whoever takes over the running
-- service (its password, its host) can append to the log but not UPDATE, DELETE or TRUNCATE what is in it.
--
-- Run once as the database owner or a superuser, connected to the taxinbox database, after the migrations were
-- applied by the owner (any taxinbox command that writes applies them; run one with the owner's URL after every
-- upgrade, e.g. `TAXINBOX__DATABASE__URL=postgres://taxinbox@127.0.0.1/taxinbox taxinbox tasks`):
--   psql -d taxinbox -f deploy/postgres-app.sql
-- Names used: taxinbox_app (the role the service runs as: `[database] url = "postgres://taxinbox_app@…"`), taxinbox
-- (the database, and the role that owns the schema; an owner may always change its own tables, so the service must
-- not run as it). Change the password, or drop it and use peer/certificate auth.

CREATE ROLE taxinbox_app LOGIN PASSWORD 'change-me';

GRANT CONNECT ON DATABASE taxinbox TO taxinbox_app;
-- CREATE: the service's start checks the migration table (`CREATE TABLE IF NOT EXISTS`, a no-op once it exists).
GRANT USAGE, CREATE ON SCHEMA public TO taxinbox_app;

-- Everything the service reads and writes…
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO taxinbox_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO taxinbox_app;
-- …except the log, which it only appends to and reads (its head, `audit_head`, it advances).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM taxinbox_app;

-- Tables a later migration creates (applied by the owner) are the service's to use too.
ALTER DEFAULT PRIVILEGES FOR ROLE taxinbox IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO taxinbox_app;
ALTER DEFAULT PRIVILEGES FOR ROLE taxinbox IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO taxinbox_app;
