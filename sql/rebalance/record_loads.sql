-- How many rows of each load this move brought (sql/check/ledger.sql counts them).
INSERT INTO rebalance_loads (move_id, load_id, rows_moved)
SELECT %(move_id)s, load_id, count(*)
FROM rebalance_staging
WHERE NOT present AND load_id IS NOT NULL
  -- a set, not `= ANY(array)`: PostgreSQL 13 searches an array row by row
  AND load_id IN (SELECT unnest(%(known)s::uuid[]))  -- known_loads.sql
GROUP BY load_id
