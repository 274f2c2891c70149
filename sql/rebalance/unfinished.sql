-- On a move's target: the latest copy of this country from that source, with what it
-- copied (the source's ledger says whether its delete followed: deleted.sql). Not a copy
-- whose rows a later move took back to the source (the map turned back before the copy's
-- delete was done): finishing it would delete the source's rows, now the only ones.
SELECT c.move_id, c.rows_moved, c.rows_hash
FROM rebalance_ledger AS c
WHERE c.step = 'copied' AND c.country = %(country)s AND c.source = %(source)s
  AND c.target = %(target)s
  AND NOT EXISTS (
      SELECT
      FROM rebalance_ledger AS d
      WHERE d.step = 'deleted' AND d.country = c.country
        AND d.source = c.target AND d.target = c.source AND d.at > c.at
  )
ORDER BY c.at DESC
LIMIT 1
