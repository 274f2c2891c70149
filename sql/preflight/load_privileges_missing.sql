-- What the connection's role lacks of what `pipeline load` needs on an initialised shard (no
-- rows on one not initialised: the load then says to run `pipeline init`). One privilege a
-- row: has_table_privilege('t', 'INSERT, UPDATE') is true when *any* of them is held.
SELECT need
FROM (VALUES
    ('SELECT on residents', 'residents', 'SELECT'),
    ('INSERT on residents', 'residents', 'INSERT'),
    ('UPDATE on residents', 'residents', 'UPDATE'),
    ('SELECT on load_ledger', 'load_ledger', 'SELECT'),
    ('INSERT on load_ledger', 'load_ledger', 'INSERT'),
    -- which ids a renumbering rebalance took (sql/load/renumbered.sql), read at each file
    ('SELECT on rebalance_renumbered', 'rebalance_renumbered', 'SELECT'),
    ('SELECT on rebalance_ledger', 'rebalance_ledger', 'SELECT')
) AS t (need, tab, priv)
WHERE to_regclass('residents') IS NOT NULL AND to_regclass('load_ledger') IS NOT NULL
  -- a table a shard behind the schema lacks is no privilege missing (the load refuses the
  -- shard for its version); CASE, as WHERE may evaluate its terms in any order
  AND CASE WHEN to_regclass(tab) IS NULL THEN false ELSE NOT has_table_privilege(tab, priv) END
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
