-- The server's own time-outs for a statement, an idle transaction and a transaction, as a
-- role or a database may set them (pg_settings' source: 'user', 'database', 'database
-- user', the configuration file), off for this session, as pg_dump turns them off: the
-- tool's statements and transactions are long by design (a 10M-row COPY is one
-- statement; a load's transaction idles on one shard while it writes another). Left as they
-- are: those the connection itself set (source 'client': the DSN's options, PGOPTIONS, a
-- service file), and lock_timeout, which guards the database against queues behind a lock
-- (a load and an erasure set their own). transaction_timeout exists from PostgreSQL 17:
-- before, it is not in pg_settings.
SELECT set_config(name, '0', false)
FROM pg_settings
WHERE name IN ('statement_timeout', 'idle_in_transaction_session_timeout', 'transaction_timeout')
    AND source <> 'client'
    AND setting <> '0'
