-- The schema of this shard's tables and the names of their identity sequences, for
-- grant.sql.
SELECT n.nspname,
       (SELECT s.relname FROM pg_class AS s
        WHERE s.oid = pg_get_serial_sequence('residents', 'id')::regclass),
       (SELECT s.relname FROM pg_class AS s
        WHERE s.oid = pg_get_serial_sequence('load_ledger', 'ledger_id')::regclass)
FROM pg_class AS t
JOIN pg_namespace AS n ON n.oid = t.relnamespace
WHERE t.oid = 'residents'::regclass
