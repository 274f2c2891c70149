-- The files this shard's ledger holds (for the cross-shard agreement check).
SELECT DISTINCT source_sha256, source_file FROM load_ledger
