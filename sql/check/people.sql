-- Each resident's person key (a 64-bit hash of name, age and address that PostgreSQL keeps
-- with the row: sql/migrations/0009_person_key_ascii.sql) with the resident's id, for the
-- cross-shard "same person" check: no personal data leaves the shard. hashtextextended is
-- PostgreSQL's stable hash (hash partitioning relies on it): shards of the same encoding
-- hash the same text alike, and it lowers A-Z only (under the C collation), whatever each
-- server's own collation.
array_agg(person_key) AS keys, array_agg(id) AS ids
