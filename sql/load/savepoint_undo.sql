-- Back to savepoint.sql's savepoint: nothing of the two statements stays.
ROLLBACK TO SAVEPOINT load_write
