-- For snapshot_delete.sql, when the probes covered one unbroken range of ids on this shard,
-- %(low)s to %(high)s (pipeline/shard_rows.py: a file sorted by id): the client knows every
-- row of that range the shard holds, and copied those the file does not give into
-- load_missing (copy_missing.sql). A row the file does not give is one of those, or
-- outside the range; the ids the file gives are not read at all. (A row of the source
-- written by hand into the range after its probe is not seen: other loads cannot, they wait
-- for the lock.) One IN of a union, not an OR of conditions: PostgreSQL makes it a join,
-- where an EXISTS under an OR is a subplan that scans load_missing once a row when the list
-- outgrows hash memory.
r.id IN (
    SELECT m.id FROM load_missing AS m
    UNION ALL
    SELECT o.id FROM residents AS o WHERE o.id < %(low)s::bigint OR o.id > %(high)s::bigint
)
