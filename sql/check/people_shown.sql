-- What each shard gives the cross-shard person check, as a person would ask for it: the
-- `sql` of the check's result (pasted into psql on each shard, the person keys found on
-- more than one shard are the failures, each with its ids). The check itself reads them in
-- chunks (keys.sql with people.sql).
SELECT person_key, id FROM residents ORDER BY person_key, id
