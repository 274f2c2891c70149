-- For snapshot_delete.sql, when the probes covered one unbroken range of ids on this shard,
-- %(low)s to %(high)s (pipeline/shard_rows.py: a file sorted by id): the client knows every
-- row of that range the shard holds, and copied those the file does not give into
-- load_missing (copy_missing.sql). A row the file does not give is one of those, or
-- outside the range; the ids the file gives are not read at all. (A row of the source
-- written by hand into the range after its probe is not seen: other loads cannot, they wait
-- for the lock.)
-- The ids gathered into an array first (an InitPlan, run once), which the delete then looks
-- up in the id index: a join of residents with the list was the planner's choice to make,
-- and on a shard whose statistics a first load had outrun (estimating a few thousand of its
-- rows where it held 600k) it hashed all of residents to find 6k of them, 0.45 s a shard
-- where the lookups take 0.03 (measured on PG18). Not `id = ANY(list) OR id < low OR id >
-- high`: planned as a sequential scan, that searched the list once a row (10.8 s). An OR of
-- an EXISTS would be a subplan that scans load_missing once a row. The array holds only
-- this source's ids (load_missing holds no other's: pipeline/shard_rows.py), the rows the
-- deletion takes; past 67M of them (2^26: the array doubles up to PostgreSQL's 1 GB) the
-- shard's load fails, changing nothing.
r.id = ANY (ARRAY(
    SELECT m.id FROM load_missing AS m
    UNION ALL
    SELECT o.id FROM residents AS o WHERE o.id < %(low)s::bigint AND o.source = %(source)s::text
    UNION ALL
    SELECT o.id FROM residents AS o WHERE o.id > %(high)s::bigint AND o.source = %(source)s::text
))
