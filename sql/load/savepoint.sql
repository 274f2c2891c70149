-- Before the two statements that write a file's rows (update.sql, insert.sql):
-- the one-statement upsert (upsert.sql) starts again from here when they cannot finish.
SAVEPOINT load_write
