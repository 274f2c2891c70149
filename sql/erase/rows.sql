-- The residents an erase by SHARD:ID names on this shard: their person fields make the
-- erasure's hash (they never leave the erase command).
SELECT id, country, name, age, address
FROM residents
WHERE id = ANY(%s)
ORDER BY id
