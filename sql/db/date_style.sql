-- ISO dates for every session, whatever a role, a database or the connection's options set:
-- psycopg reads a date or a timestamp in ISO style only (with `SQL, DMY` a shard's status
-- was a traceback), and a snapshot's output is the same on any server. Sent in the
-- session's first round trip with the time-outs (pipeline.db.open_connection).
SET DateStyle = 'ISO, YMD'
