-- record_loads.sql, once the rows are in residents (copy_direct.sql): the country's rows
-- there are the moved ones.
INSERT INTO rebalance_loads (move_id, load_id, rows_moved)
SELECT %(move_id)s, load_id, count(*)
FROM residents
WHERE country = %(country)s AND load_id IS NOT NULL
  -- a set, not `= ANY(array)`: PostgreSQL 13 searches an array row by row
  AND load_id IN (SELECT unnest(%(known)s::uuid[]))  -- known_loads.sql
GROUP BY load_id
