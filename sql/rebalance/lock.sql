-- Wait for the load lock (db.LOCK_LOAD) for the whole session, across the move's
-- transactions: a load of this shard waits for it in sql/schema/lock.sql until the
-- move of the country ends (pg_advisory_unlock, or the connection's end).
SELECT pg_advisory_lock(%s)
