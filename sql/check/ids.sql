-- The ids of the shard, for the cross-shard id check: the keys are the ids themselves.
array_agg(id) AS keys
