-- The ids of the rows a snapshot's probes found in their unbroken range that the file does
-- not give (pipeline/shard_rows.py): gone_in_range.sql: a snapshot deletes those of its source.
-- In binary, laid out by numpy as copy_seen.sql's.
COPY load_missing (id) FROM STDIN (FORMAT binary)
