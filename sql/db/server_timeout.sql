-- One of the server's own time-outs, as a role or a database may set it, off for this
-- session (pg_dump does the same): the tool's statements and transactions are long by
-- design (a 10M-row COPY is one statement; a load's transaction idles on one shard while it
-- writes another), and its own time-outs govern them (pipeline.watchdog, `load
-- --statement-timeout` and `--lock-timeout`). A plain SET, the first statement a session
-- runs: it takes microseconds, well inside any time-out it turns off.
SET {name} = 0
