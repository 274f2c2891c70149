-- At each later file of a run: the ledger rows written on this shard since the last look
-- (ledger_holds.sql). A shard's ledger rows are written one load at a time, each under the
-- load lock this file's transaction now holds, so ids grow in the order they commit: none
-- below the mark can appear later.
SELECT max(ledger_id) AS mark, array_agg(DISTINCT source_sha256::text) AS files
FROM load_ledger
WHERE ledger_id > %(mark)s
