-- Before a snapshot's deletion (snapshot_delete.sql): hash or merge joins only, for this
-- transaction until nested_loops.sql. The deletion compares every row of the source with
-- the file's ids in the temporary tables, which have no index. Planned on statistics taken
-- before the rows had this source (a first snapshot soon after they were written, before
-- autoanalyze saw them), PostgreSQL took the source for one row and chose nested loops that
-- scan a temporary table once a row: 172 s for 600k rows on the bench's shards, against
-- 0.4 s with hash joins.
SET LOCAL enable_nestloop = off
