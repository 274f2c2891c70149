-- Before the statements that write a file's rows (kept.sql, delete_marked.sql, update.sql,
-- insert.sql; preview.sql for --dry-run): join the staged rows to residents by its primary
-- key only, a row at a time, until joins_any.sql. The staging table has no statistics; on
-- its size alone PostgreSQL hashed the whole of residents to update a tenth of it.
-- Measured with update.sql on a 600k-row shard, one server, after a CHECKPOINT (2-3 rounds
-- each): 60k rows changed 0.66-0.74 s -> 0.38-0.40 s; 200k 1.17-1.76 s -> 1.10-1.22 s;
-- every row 3.52-3.74 s -> 3.30-3.60 s; on a 6M-row shard, 600k changed 6.2-7.0 s ->
-- 5.8-6.4 s. After ANALYZE of the staging table it hashed the staged rows and read all of
-- residents: slower still (0.55-0.58 s, 8.6 s). upsert.sql, the fallback, joins nothing.
SET LOCAL enable_hashjoin = off;
SET LOCAL enable_mergejoin = off
