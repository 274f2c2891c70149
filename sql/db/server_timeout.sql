-- One of the server's own time-outs, as a role or a database may set it, off for this
-- session, as pg_dump turns them off: the tool's statements and transactions are long by
-- design (a 10M-row COPY is one statement; a load's transaction idles on one shard while it
-- writes another). pipeline.db sends one for each of SERVER_TIMEOUTS the connection's own
-- options leave unset, all in its first round trip. A plain SET: a query of pg_settings
-- for each setting's source cost a new session some 3 ms of catalog reads.
SET {name} = 0
