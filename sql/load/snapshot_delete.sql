-- A snapshot of source %(source)s (pipeline/sync.py): delete this source's rows that the
-- file's part for this shard does not give ({gone}: gone_unlisted.sql, or gone_in_range.sql
-- for a file sorted by id). The file's new rows are in residents itself (the direct COPY
-- wrote them: this file's load, at this transaction's start). load_kept holds the ids of
-- records the rules refused: a refused record is no sign that its resident left. Rows a
-- later file of this run already wrote (protected.sql; a re-run completing this file late)
-- stay: the later file wins.
-- Run before update.sql and insert.sql, whose rows it therefore cannot see as missing.
-- Returns what it deleted by country, and the ids when %(with_ids)s (a dry run's --json).
WITH gone AS (
    DELETE FROM residents AS r
    WHERE r.source = %(source)s::text
      AND {gone}
      AND NOT (r.load_id IS NOT DISTINCT FROM %(load_id)s::uuid AND r.loaded_at = now())
      AND NOT EXISTS (SELECT FROM load_kept AS k WHERE k.id = r.id)
      AND NOT EXISTS (
          SELECT
          FROM unnest(%(kept_load)s::uuid[], %(kept_after)s::timestamptz[],
                      %(kept_until)s::timestamptz[]) AS k (load_id, after, until)
          WHERE r.load_id = k.load_id AND r.loaded_at > coalesce(k.after, '-infinity') AND r.loaded_at <= k.until)
    RETURNING r.id, r.country
)
SELECT country, count(*), CASE WHEN %(with_ids)s THEN array_agg(id ORDER BY id) END
FROM gone
GROUP BY country
ORDER BY country
