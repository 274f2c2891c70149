-- Rows may bring their own ids; move the identity past every id in the table and in
-- this file, so that a row without an id never gets one that is taken.
SELECT setval(seq, greatest(top, 1), top > 0)
FROM (SELECT pg_get_serial_sequence('residents', 'id')::regclass AS seq) AS s,
LATERAL (
    SELECT greatest(
        coalesce((SELECT max(id) FROM residents), 0),
        coalesce((SELECT max(id) FROM load_checked WHERE reason IS NULL), 0),
        coalesce(pg_sequence_last_value(s.seq), 0)
    ) AS top
) AS t
