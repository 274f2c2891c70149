-- After the staging tables exist: a file that must be read again (a conflict on the direct
-- COPY, a CSV file the fast reader cannot take) starts again from here.
SAVEPOINT load_file
