-- The outbox is no longer indexed by flag. Only a subject access request or an erasure looks
-- its messages up by flag, and the table holds a few days of messages (retention.flag_messages),
-- so scanning it then is cheap. The index cost every flag message a write to a random place:
-- with many callers' flags updated at once, storing a message took about 12 µs on SQLite with
-- it and 3.5 µs without it (100,000 messages of 997 flags, in batches of 1,000).
DROP INDEX flag_messages_flag;
