-- Only calls with a phone or an address are looked up by it: a call without one (a withheld
-- number, no address given) no longer adds an entry to that index on every insert.
DROP INDEX flagger_calls_phone;
DROP INDEX flagger_calls_address;
CREATE INDEX flagger_calls_phone ON flagger_calls (phone_ref, occurred_ms) WHERE phone_ref IS NOT NULL;
CREATE INDEX flagger_calls_address ON flagger_calls (address_ref, occurred_ms) WHERE address_ref IS NOT NULL;
