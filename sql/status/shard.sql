-- What `pipeline status` shows of an initialised shard.
SELECT
    (SELECT count(*) FROM residents) AS residents,
    last.finished_at,
    last.source_file
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT finished_at, source_file
    FROM load_ledger
    ORDER BY finished_at DESC
    LIMIT 1
) AS last ON true
