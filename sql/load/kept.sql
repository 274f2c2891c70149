-- How many valid rows of this file the upsert will leave alone because a later file of this
-- run already wrote that id here (protected.sql), with other content: "kept".
SELECT count(*)
FROM load_checked AS c
JOIN residents AS r ON r.id = c.id_v
WHERE c.reason IS NULL AND NOT c.deleting
  AND ((r.country, r.name, r.gender, r.age, r.address)
       IS DISTINCT FROM (c.country, c.name_v, c.gender_v, c.age_v::smallint, c.address_v)
       OR (%(source)s::text IS NOT NULL AND r.source IS DISTINCT FROM %(source)s::text))
  AND EXISTS (
      SELECT
      FROM unnest(%(kept_load)s::uuid[], %(kept_after)s::timestamptz[],
                  %(kept_until)s::timestamptz[]) AS k (load_id, after, until)
      WHERE r.load_id = k.load_id AND r.loaded_at > coalesce(k.after, '-infinity') AND r.loaded_at <= k.until)
