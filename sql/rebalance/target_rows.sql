-- The rows a move's target holds for the staged ones (under their new id if renumbered),
-- with the id they have on the source, for hash.sql.
SELECT s.id, (s.id, r.country, r.name, r.gender, r.age, r.address)::text AS line
FROM rebalance_staging AS s
JOIN residents AS r ON r.id = coalesce(s.new_id, s.id)
