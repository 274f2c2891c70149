-- Has this shard already loaded a file with these exact bytes? If so, how many of its
-- rows did that load reject here (this run reports the file's rows as that run left them).
SELECT rows_rejected
FROM load_ledger
WHERE source_sha256 = %s
ORDER BY finished_at DESC
LIMIT 1
