-- Has this shard already loaded a file with these exact bytes, under the same source and
-- mode (an append and a snapshot of one file are two loads)? If so, how many of its rows did
-- that load reject here (this run reports the file's rows as that run left them).
SELECT rows_rejected
FROM load_ledger
WHERE source_sha256 = %(sha256)s
  AND source IS NOT DISTINCT FROM %(source)s::text
  AND mode = %(mode)s
ORDER BY finished_at DESC
LIMIT 1
