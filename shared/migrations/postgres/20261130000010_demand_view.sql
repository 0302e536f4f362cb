-- What demand lets others read of its calls (the desk's demand page): times and channel only,
-- never its table itself.
CREATE VIEW demand_call_times AS
    SELECT first_ms, channel, offered_ms, answered_ms, abandoned FROM demand_calls;
