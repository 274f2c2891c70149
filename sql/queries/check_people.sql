-- A 64-bit hash of each resident's person fields (name, age, address) with the resident's
-- id, for the cross-shard "same person" check: no personal data leaves the shard. Sent in
-- COPY's binary format, in no order (sorting them cost the servers more than hashing):
-- pipeline/crosscheck.py partitions them by hash. hashtextextended is PostgreSQL's stable
-- hash (hash partitioning relies on it): shards of the same encoding hash the same text
-- alike. Like lower(), it sees the text as each server stores it.
SELECT hashtextextended(
           concat_ws(chr(31), lower(name), age::text, lower(coalesce(address, ''))), 0
       ) AS key,
       id
FROM residents
