-- Nurses' feedback on flags: one verdict per nurse per flag, the last one counts.
CREATE TABLE desk_feedback (
    flag_id     TEXT    NOT NULL,
    user_name   TEXT    NOT NULL,
    verdict     TEXT    NOT NULL,
    note        TEXT,
    at_ms       BIGINT  NOT NULL,
    PRIMARY KEY (flag_id, user_name)
);
CREATE INDEX desk_feedback_time ON desk_feedback (at_ms);
