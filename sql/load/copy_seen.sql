-- The rows of the file the shard holds with the same content (pipeline/shard_rows.py
-- compared them): not written, only their ids and record numbers, so that duplicates.sql
-- sees every id the file gives. In binary: the client lays the numbers out with numpy.
COPY load_seen (id, record) FROM STDIN (FORMAT binary)
