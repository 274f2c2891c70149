-- How long the erase's transaction waits for a lock (a load of this shard holds the load
-- lock for a file's whole transaction): set for this transaction only.
SELECT set_config('lock_timeout', %s, true)
