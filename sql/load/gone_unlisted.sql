-- For snapshot_delete.sql: a row whose id the file does not give, read from every id it
-- gives to this shard: the rows to write (load_staging) and those the shard holds
-- unchanged (load_seen).
NOT EXISTS (SELECT FROM load_staging AS s WHERE s.id_v = r.id)
AND NOT EXISTS (SELECT FROM load_seen AS s WHERE s.id = r.id)
