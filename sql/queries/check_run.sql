-- Run one check's failing-rows query on a shard: how many rows fail, and the first few
-- samples. A psycopg.sql template: the failing query returns `sample` (text) and
-- `detail` (jsonb, shown only when asked).
WITH failing AS MATERIALIZED (
    {failing}
)
SELECT
    (SELECT count(*) FROM failing),
    (SELECT coalesce(array_agg(sample), '{{}}') FROM (SELECT sample FROM failing LIMIT {limit}) AS s),
    (SELECT coalesce(jsonb_agg(detail), '[]') FROM (SELECT detail FROM failing LIMIT {limit}) AS d)
