-- Before the two statements that write a file's rows (load_update.sql, load_insert.sql):
-- the one-statement upsert (load_upsert.sql) starts again from here when they cannot finish.
SAVEPOINT load_write
