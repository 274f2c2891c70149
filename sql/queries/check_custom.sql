-- A user's query returning failing rows; its `id` column, if any, gives the samples.
SELECT coalesce('id=' || (to_jsonb(r) ->> 'id'), 'row') AS sample, to_jsonb(r) AS detail
FROM ({custom}) AS r
