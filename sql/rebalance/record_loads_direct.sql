-- record_loads.sql, once the rows are in residents (copy_direct.sql): the country's rows
-- there are the moved ones.
INSERT INTO rebalance_loads (move_id, load_id, rows_moved)
SELECT %(move_id)s, load_id, count(*)
FROM residents
WHERE country = %(country)s AND load_id IS NOT NULL
  AND load_id = ANY(%(known)s::uuid[])  -- known_loads.sql
GROUP BY load_id
