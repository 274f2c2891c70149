-- The rows of one country on a move's source, for hash.sql.
SELECT id, (id, country, name, gender, age, address)::text AS line
FROM residents
WHERE country = %(country)s
