-- The audit log becomes tamper-evident: each entry carries the hash of the one before it and
-- its own hash over both (computed by the desk's store; entries written before this migration
-- are sealed the first time the desk starts).
ALTER TABLE desk_audit ADD COLUMN prev_hash TEXT;
ALTER TABLE desk_audit ADD COLUMN hash TEXT;

-- Erasures done (`lantern erase`), numbered: a running service that sees a new one forgets
-- what it holds in memory and reads it again from the database. No caller is named here.
CREATE TABLE shared_erasures (
    id     BIGSERIAL PRIMARY KEY,
    at_ms  BIGINT  NOT NULL
);

-- Retention pruning looks rows up by age.
CREATE INDEX desk_flags_closed ON desk_flags (closed_ms);
CREATE INDEX desk_flags_updated ON desk_flags (updated_ms);
CREATE INDEX desk_updates_time ON desk_updates (received_ms);
CREATE INDEX desk_sessions_time ON desk_sessions (created_ms);
CREATE INDEX flagger_repeat_flags_time ON flagger_repeat_flags (t0_ms);
CREATE INDEX flagger_mh_flags_time ON flagger_mh_flags (occurred_ms);
CREATE INDEX flagger_mh_flags_flag ON flagger_mh_flags (flag_id);
CREATE INDEX flagger_repeat_flags_caller ON flagger_repeat_flags (caller_ref);
