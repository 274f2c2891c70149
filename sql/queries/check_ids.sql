-- Every id, gathered in buckets by a hash of the id (an id falls in the same bucket on
-- every shard), buckets in order, for the cross-shard id check: a few large rows cross
-- the wire far faster than one row an id. {shift} sets the number of buckets. The ids are
-- the keys: no second array.
SELECT hashint8extended(id, 0) >> {shift} AS bucket, array_agg(id) AS keys, NULL::bigint[] AS ids
FROM residents
GROUP BY bucket
ORDER BY bucket
