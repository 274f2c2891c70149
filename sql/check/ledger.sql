-- Load reconciliation on one shard: no load holds more rows than the ledger says it wrote
-- (inserted + updated), and no row names a load the ledger does not know. A row a load
-- wrote may later be updated by another load (it moves to that one), and rows may be
-- deleted (an erasure request, a rebalance moving them away): both are legitimate, so the
-- check is "at most", per load. {written} is ledger_written.sql. (counts.sql settles a
-- shard that passes in its one scan; this query runs when one does not, for the samples.)
SELECT 'load ' || r.load_id || ' holds ' || r.n || ' rows but the ledger says it wrote '
           || coalesce(l.written, 0)::text AS sample,
       NULL::jsonb AS detail
FROM (SELECT load_id, count(*) AS n FROM residents WHERE load_id IS NOT NULL GROUP BY load_id) AS r
LEFT JOIN ({written}) AS l USING (load_id)
WHERE r.n > coalesce(l.written, 0)
