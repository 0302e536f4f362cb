-- The nurses' desk: every flag it has received, with its acknowledgement and outcome.
CREATE TABLE desk_flags (
    flag_id          TEXT    PRIMARY KEY,
    kind             TEXT    NOT NULL,
    severity         TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    call_id          TEXT    NOT NULL,
    caller_ref       TEXT,
    channel          TEXT,
    division         TEXT,
    payload          TEXT    NOT NULL,
    raised_ms        BIGINT  NOT NULL,
    updated_ms       BIGINT  NOT NULL,
    acknowledged_by  TEXT,
    acknowledged_ms  BIGINT,
    outcome          TEXT,
    note             TEXT,
    closed_by        TEXT,
    closed_ms        BIGINT
);
CREATE INDEX desk_flags_status ON desk_flags (status, raised_ms);
CREATE INDEX desk_flags_caller ON desk_flags (caller_ref);

-- Everything the live page streams, in order: flag messages and desk changes. The stream's
-- event id is seq, so a page that reconnects resumes exactly where it left off.
CREATE TABLE desk_updates (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    flag_id      TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    message_key  TEXT    NOT NULL UNIQUE,
    payload      TEXT    NOT NULL,
    received_ms  BIGINT  NOT NULL
);
CREATE INDEX desk_updates_flag ON desk_updates (flag_id);

-- Who viewed or changed what, when and why.
CREATE TABLE desk_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       BIGINT  NOT NULL,
    user_name   TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    reason      TEXT
);
CREATE INDEX desk_audit_time ON desk_audit (at_ms);
