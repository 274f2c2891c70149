-- Remove the residents an erase by match finds (see matching.sql).
DELETE FROM residents AS r
WHERE {person} = %(hash)s
RETURNING r.id, r.country
