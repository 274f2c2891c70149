-- Has this shard already loaded a file with these exact bytes?
SELECT load_id, finished_at
FROM load_ledger
WHERE source_sha256 = %s
ORDER BY finished_at DESC
LIMIT 1
