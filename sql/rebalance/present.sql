-- Which staged rows the target already holds (the same id), and which of those are a
-- different row: never overwritten.
UPDATE rebalance_staging AS s
SET present = true,
    collides = (r.country, r.name, r.gender, r.age, r.address)
               IS DISTINCT FROM (s.country, s.name, s.gender, s.age, s.address)
FROM residents AS r
WHERE r.id = coalesce(s.new_id, s.id)
