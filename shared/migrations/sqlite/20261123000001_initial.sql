-- Event ids each consuming service has processed: the idempotency key of SPEC section 2.
CREATE TABLE processed_events (
    service     TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    received_ms BIGINT  NOT NULL,
    PRIMARY KEY (service, event_id)
);
CREATE INDEX processed_events_age ON processed_events (received_ms);

-- Calls the flagger has counted, one row per call_id. Only pseudonyms are kept; a ref is
-- NULL when that identity was absent, excluded or merged into an earlier call.
CREATE TABLE flagger_calls (
    call_id       TEXT    PRIMARY KEY,
    event_id      TEXT    NOT NULL,
    occurred_ms   BIGINT  NOT NULL,
    channel       TEXT    NOT NULL,
    division      TEXT,
    phone_ref     TEXT,
    address_ref   TEXT,
    communal      SMALLINT,
    age_band      TEXT,
    received_ms   BIGINT  NOT NULL
);
CREATE INDEX flagger_calls_time ON flagger_calls (occurred_ms);
CREATE INDEX flagger_calls_phone ON flagger_calls (phone_ref, occurred_ms);
CREATE INDEX flagger_calls_address ON flagger_calls (address_ref, occurred_ms);

-- Repeat-caller flags: one row per flag, raised at t0 for one identity.
CREATE TABLE repeat_flags (
    flag_id     TEXT    PRIMARY KEY,
    identity    TEXT    NOT NULL,
    caller_ref  TEXT    NOT NULL,
    t0_ms       BIGINT  NOT NULL,
    raised_ms   BIGINT  NOT NULL
);
CREATE INDEX repeat_flags_caller ON repeat_flags (identity, caller_ref, t0_ms);

-- Mental-health flags: at most one per call.
CREATE TABLE mh_flags (
    call_id     TEXT    PRIMARY KEY,
    flag_id     TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    occurred_ms BIGINT  NOT NULL,
    raised_ms   BIGINT  NOT NULL
);

-- Every flag message, raised or updated, in the order it was produced. published_ms is set
-- once it has been handed to the broker; rows still NULL are published again at start-up.
CREATE TABLE flag_messages (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    flag_id      TEXT    NOT NULL,
    topic        TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    created_ms   BIGINT  NOT NULL,
    published_ms BIGINT
);
CREATE INDEX flag_messages_flag ON flag_messages (flag_id);
CREATE INDEX flag_messages_unpublished ON flag_messages (published_ms) WHERE published_ms IS NULL;
