-- The rows that later files of this run (their sha256: %(later)s) already wrote on this
-- shard: a file completed late, by a re-run, must not overwrite them. Rows carry the load
-- that wrote them (load_id) and when (loaded_at); a load writes one file after another on a
-- shard, each committed with its ledger row, so a file's rows are those of its load whose
-- loaded_at is after the ledger row of that load's previous file here and no later than its
-- own. One row per (load, interval); rows another load wrote since have moved out of it.
SELECT l.load_id, l.previous, l.finished_at  -- previous: NULL for a load's first file
FROM (
    SELECT load_id, source_sha256, finished_at,
           lag(finished_at) OVER (PARTITION BY load_id ORDER BY finished_at) AS previous
    FROM load_ledger
    WHERE load_id IN (
        SELECT load_id FROM load_ledger WHERE source_sha256 = ANY(%(later)s::char(64)[])
    )
) AS l
WHERE l.source_sha256 = ANY(%(later)s::char(64)[])
