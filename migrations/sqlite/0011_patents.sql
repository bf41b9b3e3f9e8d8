-- Patents of clients on the patent system (ПСН), from `directory import --patents`: the tax calendar generates their
-- payments per patent (п. 2 ст. 346.51 НК РФ).
CREATE TABLE patents (
    client_inn TEXT NOT NULL REFERENCES clients (inn),
    number     TEXT NOT NULL,
    date_from  TEXT NOT NULL,
    date_to    TEXT NOT NULL,
    region     TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (client_inn, number)
) STRICT;
