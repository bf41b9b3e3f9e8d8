-- Shadow mode (SQLite): what a candidate ruleset would have decided on live mail, never acted on. Append-only:
-- never edit a shipped migration. One row per mail whose shadow decision differs from the live one (or, with
-- `rules.shadow_record_equal`, also equals it), written in the transaction that commits the mail. Each side holds
-- its ruleset version, deciding rule file, category, kind, client INN, planned tasks (JSON array of
-- {step, due, assignee}) and the error that would have quarantined the mail. `differs` is 0 or 1.

CREATE TABLE shadow_decisions (
    id                INTEGER PRIMARY KEY,
    message           INTEGER NOT NULL REFERENCES messages (id),
    sha256            TEXT NOT NULL,
    message_id        TEXT,
    at                TEXT NOT NULL,
    differs           INTEGER NOT NULL,
    live_ruleset      TEXT NOT NULL,
    live_rule         TEXT,
    live_category     TEXT,
    live_kind         TEXT,
    live_client_inn   TEXT,
    live_tasks        TEXT NOT NULL DEFAULT '[]',
    live_error        TEXT,
    shadow_ruleset    TEXT NOT NULL,
    shadow_rule       TEXT,
    shadow_category   TEXT,
    shadow_kind       TEXT,
    shadow_client_inn TEXT,
    shadow_tasks      TEXT NOT NULL DEFAULT '[]',
    shadow_error      TEXT
) STRICT;
CREATE INDEX shadow_decisions_by_at ON shadow_decisions (at);
