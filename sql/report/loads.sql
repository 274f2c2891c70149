-- The shard's latest loads, newest first.
SELECT source_file, finished_at, rows_loaded, rows_rejected, inserted, updated, unchanged
FROM load_ledger
ORDER BY finished_at DESC
LIMIT %s
