-- Every table is named for the part of Lantern that owns it and alone writes it: flagger_,
-- demand_, desk_, and shared_ for the processed-event de-duplication every consumer shares.
ALTER TABLE processed_events RENAME TO shared_processed_events;
ALTER TABLE repeat_flags RENAME TO flagger_repeat_flags;
ALTER TABLE mh_flags RENAME TO flagger_mh_flags;
ALTER TABLE flag_messages RENAME TO flagger_flag_messages;

-- What the flagger lets others read of its call history (the desk's caller history and top
-- callers): pseudonyms and times only, never its table itself.
CREATE VIEW flagger_caller_calls AS
    SELECT call_id, occurred_ms, channel, division, phone_ref, address_ref FROM flagger_calls;
