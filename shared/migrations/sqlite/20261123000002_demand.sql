-- Calls as the demand service counts them: one row per call_id, with what the service level
-- and abandonment figures need. Kept for the longest demand window, then pruned.
CREATE TABLE demand_calls (
    call_id      TEXT    PRIMARY KEY,
    first_ms     BIGINT  NOT NULL,
    channel      TEXT    NOT NULL,
    division     TEXT    NOT NULL,
    offered_ms   BIGINT,
    answered_ms  BIGINT,
    abandoned    SMALLINT NOT NULL DEFAULT 0,
    mh_ms        BIGINT
);
CREATE INDEX demand_calls_time ON demand_calls (first_ms);

-- The division labels in use, in the order first seen (bounded by demand.max_divisions).
CREATE TABLE demand_divisions (
    division    TEXT    PRIMARY KEY,
    first_ms    BIGINT  NOT NULL
);

-- Calls with a mental-health flag, by event time.
CREATE TABLE demand_mh (
    call_id      TEXT    PRIMARY KEY,
    occurred_ms  BIGINT  NOT NULL
);
CREATE INDEX demand_mh_time ON demand_mh (occurred_ms);
