-- The load lock of the second shard of a move, without waiting: a move waits for one
-- shard's lock holding none, so that it never waits in a cycle with a load that holds
-- the other shard's lock (two servers cannot see such a deadlock).
SELECT pg_try_advisory_lock(%s)
