-- The keys of a cross-shard check (check_ids.sql, check_people.sql), in COPY's binary
-- format: a fixed-width row of 64-bit integers that numpy reads as it comes. A
-- psycopg.sql template.
COPY ({keys}) TO STDOUT (FORMAT binary)
