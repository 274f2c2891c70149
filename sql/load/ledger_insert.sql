-- finished_at is the time of this insert, the last statement before COMMIT, not the
-- transaction's start (now()): "last load" shows when a load ended, and this file's rows
-- (loaded_at, written by the upsert before it) fall before it (protected.sql).
INSERT INTO load_ledger (
    load_id, source_file, source_sha256, rows_read, rows_loaded, rows_rejected,
    inserted, updated, unchanged, forced, started_at, finished_at, source, mode, deleted,
    marked_deleted, not_found
) VALUES (
    %(load_id)s, %(source_file)s, %(sha256)s, %(rows_read)s, %(rows_loaded)s, %(rows_rejected)s,
    %(inserted)s, %(updated)s, %(unchanged)s, %(forced)s, %(started_at)s, clock_timestamp(),
    %(source)s, %(mode)s, %(deleted)s, %(marked_deleted)s, %(not_found)s
)
