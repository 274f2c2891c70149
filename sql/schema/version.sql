-- The shard's schema version (the caller checks that the version table exists first).
SELECT coalesce(max(version), 0) FROM schema_migrations
