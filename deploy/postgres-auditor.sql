-- A read-only PostgreSQL role for auditors: `taxinbox audit log | show | export | verify` work with it, nothing
-- else does (they open the database read-only and run no migrations; `audit purge` needs the service role).
--
-- Run once as the database owner or a superuser, connected to the taxinbox database:
--   psql -d taxinbox -f deploy/postgres-auditor.sql
-- Names used: taxinbox_auditor (the auditor's role), taxinbox (the database, and the service role that owns the
-- schema because it applies the migrations). Change the password, or drop it and use peer/certificate auth.

CREATE ROLE taxinbox_auditor LOGIN PASSWORD 'change-me';

-- Belt and braces: every transaction of this role is read-only, whatever it runs.
ALTER ROLE taxinbox_auditor SET default_transaction_read_only = on;

GRANT CONNECT ON DATABASE taxinbox TO taxinbox_auditor;
GRANT USAGE ON SCHEMA public TO taxinbox_auditor;

-- Reading is all an audit needs: the log, the mail, tasks, notifications, the register, the migration history
-- (taxinbox checks that the schema is complete before it reads).
GRANT SELECT ON ALL TABLES IN SCHEMA public TO taxinbox_auditor;

-- Tables a later migration creates (applied by the service role) become readable too.
ALTER DEFAULT PRIVILEGES FOR ROLE taxinbox IN SCHEMA public GRANT SELECT ON TABLES TO taxinbox_auditor;
