-- sequence.sql, once the rows are in residents (copy_direct.sql).
SELECT setval(pg_get_serial_sequence('residents', 'id'), m)
FROM (SELECT max(id) AS m FROM residents WHERE id >= 1000000000000000) AS highest
WHERE m IS NOT NULL
  AND m >= coalesce(pg_sequence_last_value(pg_get_serial_sequence('residents', 'id')), 0)
