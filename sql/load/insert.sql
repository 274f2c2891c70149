-- Add the valid rows of this file that the shard does not hold (after update.sql).
-- A row without an id takes the identity's next value (from 10^15 up). The load's advisory
-- lock keeps other loads out; a row someone else inserts by hand meanwhile makes this fail
-- with a unique violation, and the writer falls back to upsert.sql for the file.
-- loaded_at is when the file's transaction began (as for copy_direct.sql's rows), between
-- the ledger rows of the file before and of this one (protected.sql relies on it).
INSERT INTO residents (id, country, name, gender, age, address, load_id, loaded_at, source)
SELECT coalesce(c.id_v, nextval(pg_get_serial_sequence('residents', 'id'))),
       c.country, c.name_v, c.gender_v, c.age_v::smallint, c.address_v, %(load_id)s,
       now(), %(source)s::text
FROM load_checked AS c
WHERE c.reason IS NULL AND NOT c.deleting
  AND NOT EXISTS (SELECT FROM residents AS r WHERE r.id = c.id_v)
  -- Nothing is left to add when update.sql rewrote as many rows (`updated`) as there are
  -- such rows: each found its own (a row without an id finds none). The server checks this
  -- once, before any row (a one-time filter), and then skips the probes of every staged
  -- row: a file of changed rows only, as a re-export is, adds none.
  AND (SELECT count(*) FROM load_checked AS k WHERE k.reason IS NULL AND NOT k.deleting)
      <> %(updated)s
