-- Whether an unchanged row that was not sent (copy_seen.sql) is superseded by a later one:
-- its raw record is not on the shard, so the file is sent again through staging.
SELECT EXISTS (SELECT FROM load_superseded JOIN load_seen USING (record))
