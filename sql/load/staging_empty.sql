-- Empty staging.sql's tables after a file was rolled back with rows in them (a dry run, a
-- failure): a commit would have emptied them, a rollback leaves its rows behind as dead
-- ones that every later file's scans would read.
TRUNCATE load_staging, load_seen, load_missing, load_kept, load_superseded
