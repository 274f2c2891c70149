-- Rewrite the rows of this file that the shard holds with other content. A row whose
-- content is unchanged is not touched (no new row version, no WAL). A row that a later file
-- of this run already wrote (protected.sql; the arrays are empty unless a re-run
-- completes a file after a later one) is not touched either.
-- Then insert.sql adds the rest. Two statements instead of one INSERT ... ON CONFLICT
-- DO UPDATE: ON CONFLICT tries every row as an insert first (computing the stored person_key
-- of each, probing the key) and takes the conflict path for every row the shard holds, where
-- a join finds the changed rows at once. Measured on 600k rows (one server, busy machine,
-- three interleaved rounds): into an empty table 15.7-17.3 s -> 9.9-14.3 s; all unchanged
-- into a full one 9.7-13.1 s -> 2.8-4.6 s.
UPDATE residents AS r
SET country = c.country,
    name = c.name_v,
    gender = c.gender_v,
    age = c.age_v::smallint,
    address = c.address_v,
    load_id = %(load_id)s,
    loaded_at = now(),
    source = %(source)s::text
FROM load_checked AS c
WHERE c.reason IS NULL AND NOT c.deleting
  AND r.id = c.id_v
  AND ((r.country, r.name, r.gender, r.age, r.address)
       IS DISTINCT FROM (c.country, c.name_v, c.gender_v, c.age_v::smallint, c.address_v)
       -- A load that names its source claims the rows it gives (pipeline/sync.py).
       OR (%(source)s::text IS NOT NULL AND r.source IS DISTINCT FROM %(source)s::text))
  AND NOT EXISTS (
      SELECT
      FROM unnest(%(kept_load)s::uuid[], %(kept_after)s::timestamptz[],
                  %(kept_until)s::timestamptz[]) AS k (load_id, after, until)
      WHERE r.load_id = k.load_id AND r.loaded_at > coalesce(k.after, '-infinity') AND r.loaded_at <= k.until)
