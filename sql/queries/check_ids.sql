-- Every id of the shard, for the cross-shard id check, sent in COPY's binary format and
-- compared by pipeline/crosscheck.py: no sort and no hashing on the server.
SELECT id
FROM residents
