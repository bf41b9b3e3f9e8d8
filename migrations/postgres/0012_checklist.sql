-- What a demand asks for, one row per item of its list, kept with its case: the answer task's checklist, which
-- the accountant ticks in the web view (who and when).
CREATE TABLE case_checklist (
    case_id  BIGINT NOT NULL REFERENCES cases (id),
    position BIGINT NOT NULL,
    item     TEXT NOT NULL,
    done_at  TEXT,
    done_by  TEXT,
    PRIMARY KEY (case_id, position)
);
