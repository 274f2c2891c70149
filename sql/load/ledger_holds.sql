-- At a run's first file on this shard: which of the run's later files (their sha256) its
-- ledger already holds, and its newest ledger row (ledger_since.sql goes on from there).
-- Both by index: the newest id by the primary key, the files by load_ledger_sha256_idx.
SELECT
    (SELECT max(ledger_id) FROM load_ledger) AS mark,
    ARRAY(
        SELECT DISTINCT source_sha256::text
        FROM load_ledger
        WHERE source_sha256 = ANY(%(later)s::char(64)[])
    ) AS held
