-- An upper bound of the residents on this shard, from the catalog, without a scan: the
-- planner's count, or the table's size over the smallest row's (which holds even before
-- the table was first analysed).
SELECT greatest(reltuples, pg_relation_size(oid) / 64)::bigint
FROM pg_class
WHERE oid = 'residents'::regclass
