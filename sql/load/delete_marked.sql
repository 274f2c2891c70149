-- The file's delete markers for this shard (staged rows with `deleting`; a marker a later
-- row of its id supersedes is a duplicate_id reject and deletes nothing): delete the rows
-- with those ids, whatever their source. Before update.sql and insert.sql, which leave the
-- markers out. A row a later file of this run already wrote (protected.sql; a re-run
-- completing this file late) stays: the later file wins.
-- Returns (markers, rows deleted, markers left alone for a later file).
WITH marked AS (
    SELECT c.id_v AS id FROM load_checked AS c WHERE c.deleting AND c.reason IS NULL
), later AS (
    SELECT r.id
    FROM residents AS r
    JOIN marked AS m USING (id)
    WHERE EXISTS (
        SELECT
        FROM unnest(%(kept_load)s::uuid[], %(kept_after)s::timestamptz[],
                    %(kept_until)s::timestamptz[]) AS k (load_id, after, until)
        WHERE r.load_id = k.load_id AND r.loaded_at > coalesce(k.after, '-infinity') AND r.loaded_at <= k.until)
), gone AS (
    DELETE FROM residents AS r
    USING marked AS m
    WHERE r.id = m.id AND r.id NOT IN (SELECT id FROM later)
    RETURNING r.id
)
SELECT (SELECT count(*) FROM marked), (SELECT count(*) FROM gone), (SELECT count(*) FROM later)
