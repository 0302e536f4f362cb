-- Desk sign-in sessions, kept in the database so a restarted desk does not sign every nurse out
-- mid-shift. Only a SHA-256 of the cookie's token is stored: a copy of this table opens no
-- session. Rows past their 12 hours are deleted as new sessions start.
CREATE TABLE desk_sessions (
    token_hash  TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL
);
