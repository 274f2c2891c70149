-- The same rows as JSON objects, built by the server, one a line (a psycopg.sql template).
SELECT json_build_object(
    'shard', {shard}, 'id', id, 'country', country, 'name', name,
    'gender', gender, 'age', age, 'address', address{provenance}
)::text
FROM residents
{where}
ORDER BY id
