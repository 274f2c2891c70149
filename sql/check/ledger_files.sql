-- The files this shard's ledger holds, with when they were first loaded here, and when the
-- shard's first load was (a shard added to the map later cannot hold earlier files).
SELECT source_sha256, min(source_file), min(finished_at),
       (SELECT min(finished_at) FROM load_ledger)
FROM load_ledger
GROUP BY source_sha256
