-- Every id, in order (streamed for the cross-shard id check).
COPY (SELECT id FROM residents ORDER BY id) TO STDOUT
