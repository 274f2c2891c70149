-- After the statements that write a file's rows: the two join methods joins_by_id.sql
-- turned off back to what the server, the database, the role or the connection set.
SELECT set_config(name, reset_val, true)
FROM pg_settings
WHERE name IN ('enable_hashjoin', 'enable_mergejoin')
