-- Serialise whoever changes this shard's schema or data; released at commit or rollback.
SELECT pg_advisory_xact_lock(%s)
