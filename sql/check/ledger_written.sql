-- How many rows each load wrote on this shard, by the ledger: inserted + updated, and the
-- rows a rebalance brought here from another shard (they keep their load).
SELECT load_id, sum(n) AS written
FROM (
    SELECT load_id, inserted + updated AS n FROM load_ledger
    UNION ALL
    SELECT load_id, rows_moved FROM rebalance_loads
) AS w
GROUP BY load_id
