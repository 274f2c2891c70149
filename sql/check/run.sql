-- Run one check's failing-rows query on a shard: how many rows fail, and the first few
-- samples. Only the sample column is kept (the planner drops the unused detail), so the
-- work is one pass however many rows fail. A psycopg.sql template.
WITH failing AS MATERIALIZED (
    SELECT sample FROM ({failing}) AS f
)
SELECT
    (SELECT count(*) FROM failing),
    (SELECT coalesce(array_agg(sample), '{{}}') FROM (SELECT sample FROM failing LIMIT {limit}) AS s)
