-- On a move's target: the latest copy of this country from that source, with what it
-- copied (the source's ledger says whether its delete followed: deleted.sql).
SELECT move_id, rows_moved, rows_hash
FROM rebalance_ledger
WHERE step = 'copied' AND country = %(country)s AND source = %(source)s AND target = %(target)s
ORDER BY at DESC
LIMIT 1
