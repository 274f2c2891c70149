-- The ids of the shard, for the cross-shard id check: the keys are the ids themselves,
-- one bytea a chunk of 8 bytes (big-endian) an id, which numpy reads as it comes. An
-- array_agg() would put a length before every element, for the client to step over; the
-- servers take as long either way (people.sql's pairs against two arrays, a 6M-row shard:
-- 3.0 s against 2.95 s).
string_agg(int8send(id), ''::bytea) AS keys
