-- The person key (0004_person_key.sql) again, with its text lowered under the C collation,
-- which lowers A-Z only, as the erasure hashes already do (sql/erase/person.sql):
-- - every shard computes the same key for the same text, whatever its own collation (under
--   lower() as each server's LC_CTYPE has it, a tr_TR shard lowers 'I' to a dotless i, and
--   the cross-shard "same person" check missed the pair);
-- - lower() under a libc collation turns each text into wide characters and back: it was
--   a sixth of the server's CPU in a load's COPY into residents (600k rows, backend CPU,
--   medians of 5: 1.20 s with it, 1.00 s under "C"; 0.74 s with no key at all).
-- The name's hash, seeded with the age (-1 for none), seeds the address's: no text is
-- built to be hashed (the same key from name || chr(31) || age || chr(31) || address took
-- 1.00 s, this 0.94 s). A missing address hashes as an empty one, as before.
-- A key changes only for text with a non-ASCII capital letter: such text no longer matches
-- its lower-case spelling. PostgreSQL before 17 cannot change a generated
-- expression: the column is dropped and added again (last, after `source`), which rewrites
-- the table once, at `pipeline init`.
ALTER TABLE residents DROP COLUMN person_key;
ALTER TABLE residents ADD COLUMN person_key bigint GENERATED ALWAYS AS (
    hashtextextended(
        lower(coalesce(address, '') COLLATE "C"),
        hashtextextended(lower(name COLLATE "C"), coalesce(age, -1))
    )
) STORED;
