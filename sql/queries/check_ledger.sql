-- Load reconciliation on one shard. Every row a load inserted is still here (rows that
-- carry a load id = the ledger's inserted rows), and no load claims more rows than it
-- wrote (inserted + updated) or is missing from the ledger.
SELECT 'rows from loads: ' || counted.n || ', but the ledger says ' || ledger.n || ' inserted'
           AS sample,
       NULL::jsonb AS detail
FROM (SELECT count(*) AS n FROM residents WHERE load_id IS NOT NULL) AS counted,
     (SELECT coalesce(sum(inserted), 0) AS n FROM load_ledger) AS ledger
WHERE counted.n <> ledger.n
UNION ALL
SELECT 'load ' || r.load_id || ' holds ' || r.n || ' rows but wrote '
           || coalesce(l.written, 0)::text,
       NULL
FROM (SELECT load_id, count(*) AS n FROM residents WHERE load_id IS NOT NULL GROUP BY load_id) AS r
LEFT JOIN (
    SELECT load_id, sum(inserted + updated) AS written FROM load_ledger GROUP BY load_id
) AS l USING (load_id)
WHERE r.n > coalesce(l.written, 0)
