-- Remove the residents an erase by SHARD:ID names; their fields come back so that the erase
-- can see they are still the rows it read (and hashed into the log).
DELETE FROM residents
WHERE id = ANY(%s)
RETURNING id, country, name, age, address
