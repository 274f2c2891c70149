-- A 64-bit hash of each resident's person fields (name, age, address) with the resident's
-- id, in buckets of the hash, for the cross-shard "same person" check: no personal data
-- leaves the shard. hashtextextended is PostgreSQL's stable hash (hash partitioning relies
-- on it): shards of the same encoding hash the same text alike. Like lower(), it sees the
-- text as each server stores it.
SELECT h >> {shift} AS bucket, array_agg(h) AS keys, array_agg(id) AS ids
FROM (
    SELECT hashtextextended(
               concat_ws(chr(31), lower(name), age::text, lower(coalesce(address, ''))), 0
           ) AS h,
           id
    FROM residents
) AS p
GROUP BY bucket
ORDER BY bucket
