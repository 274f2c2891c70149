-- A user's query returning failing rows; its `id` column, if any, gives the samples.
-- (The line break after it keeps a trailing -- comment in the user's query harmless.)
SELECT coalesce('id=' || (to_jsonb(r) ->> 'id'), 'row') AS sample, to_jsonb(r) - 'person_key' AS detail
FROM ({custom}
) AS r
