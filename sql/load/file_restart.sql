-- Back to file_start.sql: none of the file's rows stay, the empty staging tables do.
ROLLBACK TO SAVEPOINT load_file
