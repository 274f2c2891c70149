-- The probe's lock for this shard's connection (see same_database_probe.sql): a random key,
-- never waited for, released when the probe's transaction ends.
SELECT pg_try_advisory_xact_lock(%s)
