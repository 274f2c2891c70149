-- A NOT NULL column of fixed width, packed: its values' binary forms ({send}: int8send for
-- bigint, timestamptz_send for timestamps, 8 bytes each, big-endian), one after the other.
string_agg({send}({column}), ''::bytea) AS {column}
