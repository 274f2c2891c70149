-- One shard's rows (rows.sql, or json.sql in COPY's text format) as a COPY stream.
COPY ({rows}) TO STDOUT (FORMAT {format})
