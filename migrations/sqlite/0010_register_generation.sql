-- The register's generation (SQLite): one row, bumped in the transaction of every `directory import`, so that a
-- running daemon sees a changed register with one cheap read (before each pass and each IMAP batch) and loads it
-- again. Append-only: never edit a shipped migration.

CREATE TABLE register_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
) STRICT;
INSERT INTO register_generation (id, generation) VALUES (1, 0);
