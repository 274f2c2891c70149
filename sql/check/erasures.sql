-- The erasures check: residents that an erasure of the log (every shard's, taken together)
-- matches. {name} is sql/erase/person.sql at level 'name', compared first with the
-- erasures' name hashes (`names`), so only a resident whose name was erased is hashed again
-- at each erasure's own level ({person}, against `levels` and `hashes`). The count, and
-- the first ids.
SELECT count(*), coalesce((array_agg(r.id ORDER BY r.id))[1:20], '{{}}')
FROM residents AS r
WHERE {name} = ANY(%(names)s)
  AND EXISTS (
      SELECT 1
      FROM unnest(%(levels)s::text[], %(hashes)s::bytea[]) AS l (fields, person_hash)
      WHERE {person} = l.person_hash
  )
