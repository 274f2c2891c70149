-- Once per load connection, before its first temporary table (PostgreSQL refuses the
-- change after that). The staging table of a file's rows for one shard lives in these
-- session-local buffers; at the default 8MB, a 1M-row file's staging spills to disk and is
-- read back by every later statement. Memory is taken only as the staging table grows.
SET temp_buffers = '256MB'
