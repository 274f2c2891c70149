-- Each resident's person key (a 64-bit hash of name, age and address that PostgreSQL keeps
-- with the row: sql/migrations/0009_person_key_ascii.sql) with the resident's id, for the
-- cross-shard "same person" check: no personal data leaves the shard. hashtextextended is
-- PostgreSQL's stable hash (hash partitioning relies on it): shards of the same encoding
-- hash the same text alike, and it lowers A-Z only (under the C collation), whatever each
-- server's own collation. Sent as ids.sql sends ids: 16 bytes a resident, key then id
-- (neither is ever NULL: every row has a name to hash).
string_agg(int8send(person_key) || int8send(id), ''::bytea) AS keys
