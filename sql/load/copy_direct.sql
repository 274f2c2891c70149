-- New rows straight into residents (pipeline/shard_rows.py): valid, with ids the shard does
-- not hold, in COPY's binary format (pipeline/binary_rows.py, pipeline/direct_copy.py).
-- loaded_at takes its default, the transaction's start: after the ledger row of the file
-- before and before this one's (protected.sql relies on it).
COPY residents (id, country, name, gender, age, address, load_id, source)
FROM STDIN (FORMAT binary)
