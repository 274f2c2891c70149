-- What each shard gives the cross-shard id check, as a person would ask for it: the `sql`
-- of the check's result (pasted into psql on each shard, the ids found on more than one
-- shard are the failures). The check itself reads them in chunks (keys.sql with ids.sql).
SELECT id FROM residents ORDER BY id
