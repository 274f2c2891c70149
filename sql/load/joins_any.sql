-- After the statements that write a file's rows: the two join methods joins_by_id.sql
-- turned off back to what the server, the database, the role or the connection set (as
-- nested_loops.sql does after a snapshot's deletion).
SET LOCAL enable_hashjoin TO DEFAULT;
SET LOCAL enable_mergejoin TO DEFAULT
