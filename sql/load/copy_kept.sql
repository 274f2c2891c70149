-- The ids of the file's records the rules refused, for a snapshot's delete
-- (snapshot_delete.sql). Copied, not sent as an array parameter: psycopg builds an array of
-- a million ids in some 250 MB of Python objects.
COPY load_kept (id) FROM STDIN (FORMAT csv)
