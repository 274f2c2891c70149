-- The same rows as JSON objects, built by the server, one a line: {fields} is each
-- field's name and value, and the provenance columns' if asked ('id', "id", ...).
SELECT json_build_object('shard', {shard}, {fields})::text
FROM residents
{where}
ORDER BY id
