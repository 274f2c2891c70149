-- The ids of a batch (sparse in their range, given as '{1,5,...}') that the shard holds,
-- as probe_range.sql gives them.
SELECT string_agg(id::text, ',') FROM residents WHERE id = ANY(%s::bigint[])
