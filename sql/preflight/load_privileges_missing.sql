-- What the connection's role lacks of what `pipeline load` needs on an initialised shard (no
-- rows on one not initialised: the load then says to run `pipeline init`). One privilege a
-- row: has_table_privilege('t', 'INSERT, UPDATE') is true when *any* of them is held.
SELECT need
FROM (VALUES
    ('SELECT on residents', 'residents', 'SELECT'),
    ('INSERT on residents', 'residents', 'INSERT'),
    ('UPDATE on residents', 'residents', 'UPDATE'),
    ('SELECT on load_ledger', 'load_ledger', 'SELECT'),
    ('INSERT on load_ledger', 'load_ledger', 'INSERT')
) AS t (need, tab, priv)
WHERE to_regclass('residents') IS NOT NULL AND to_regclass('load_ledger') IS NOT NULL
  AND NOT has_table_privilege(tab, priv)
UNION ALL
SELECT 'USAGE on sequence ' || s.seq
FROM (VALUES
    (pg_get_serial_sequence('residents', 'id')),
    (pg_get_serial_sequence('load_ledger', 'ledger_id'))
) AS s (seq)
WHERE to_regclass('residents') IS NOT NULL AND to_regclass('load_ledger') IS NOT NULL
  AND NOT has_sequence_privilege(s.seq, 'USAGE')
UNION ALL
-- The load stages each file in temporary tables.
SELECT 'TEMP on database ' || current_database()
WHERE NOT has_database_privilege(current_database(), 'TEMP')
