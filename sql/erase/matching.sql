-- The residents of this shard that an erase by match (--name, --age, --address) finds:
-- {person} is sql/erase/person.sql at the erasure's level, `hash` the erasure's hash.
SELECT r.id, r.country
FROM residents AS r
WHERE {person} = %(hash)s
ORDER BY r.id
