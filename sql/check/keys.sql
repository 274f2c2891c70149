-- The keys of a cross-shard check in chunks of a few table blocks: one row a chunk, each
-- column an array (the aggregates of ids.sql or people.sql). A chunk is read by
-- a TID range scan (PostgreSQL 14 and later): the table is read once, in order, with
-- nothing sorted or hashed, and a few large rows cross the wire instead of one row a
-- resident (measured: a row a resident cost the client more than the servers' whole scan).
-- The last chunk is open-ended: no row is missed. A psycopg.sql template.
SELECT c.*
FROM generate_series(
    0, (pg_relation_size('residents') / current_setting('block_size')::int)::int, {blocks}
) AS b
CROSS JOIN LATERAL (
    SELECT
        {aggregates}
    FROM residents
    WHERE ctid >= ('(' || b || ',0)')::tid AND ctid < ('(' || (b + {blocks}) || ',0)')::tid
) AS c
WHERE c.keys IS NOT NULL
