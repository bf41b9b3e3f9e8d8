-- Raw mail larger than a MiB once packed is stored in parts of a MiB, in order: its `raw_mail` row keeps an empty
-- `content` and says in `parts` how many follow. Each part is written by a statement of its own, so a large mail is
-- never bound (and copied by the driver and by the database) whole. Purging the mail deletes its parts.
ALTER TABLE raw_mail ADD COLUMN parts INTEGER NOT NULL DEFAULT 0;

CREATE TABLE raw_mail_parts (
    sha256  TEXT NOT NULL REFERENCES raw_mail (sha256),
    seq     INTEGER NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (sha256, seq)
) STRICT;
