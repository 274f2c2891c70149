-- Has this shard already loaded a file with these exact bytes, under the same source and
-- mode (an append and a snapshot of one file are two loads)? If so, how many of its rows did
-- that load reject here (this run reports the file's rows as that run left them), and
-- whether another file of the same source was loaded here since (`superseded`: a snapshot
-- of these bytes sent again after another one is loaded again, pipeline.sync.last_of_source).
SELECT found.rows_rejected,
       EXISTS (
           SELECT FROM load_ledger AS since
           WHERE since.source IS NOT DISTINCT FROM found.source
             AND since.finished_at > found.finished_at
             AND since.source_sha256 <> found.source_sha256
       ) AS superseded
FROM load_ledger AS found
WHERE found.source_sha256 = %(sha256)s
  AND found.source IS NOT DISTINCT FROM %(source)s::text
  AND found.mode = %(mode)s
ORDER BY found.finished_at DESC
LIMIT 1
