-- The failing rows of every row check on a shard, counted in one scan: {counts} is one
-- count(*) FILTER (WHERE condition) per check, the condition of its rows.sql query.
SELECT {counts}
FROM residents
