-- Sync (`pipeline load --source NAME --mode snapshot`): each resident remembers which source
-- wrote it last, so that a snapshot of that source can delete the rows the source no longer
-- has, and never touch another source's rows or rows written by hand (NULL).
-- No index: a snapshot reads the shard's rows once (a sequential scan), and an index on a
-- column of a few distinct values would cost every load more than it saves that scan.
ALTER TABLE residents ADD COLUMN source text;

-- The ledger says under which source and mode each file loaded (a file loaded as an append
-- and then as a snapshot is two different loads), and what it deleted here: `deleted` the
-- rows removed (by the file's delete markers and by a snapshot), `marked_deleted` the delete
-- markers that found their row, `not_found` those that did not. A delete marker is a record
-- of the file, loaded like any other: the counts still add up.
ALTER TABLE load_ledger
    ADD COLUMN source          text,
    ADD COLUMN mode            text   NOT NULL DEFAULT 'append'
        CONSTRAINT load_ledger_mode CHECK (mode IN ('append', 'snapshot')),
    ADD COLUMN deleted         bigint NOT NULL DEFAULT 0,
    ADD COLUMN marked_deleted  bigint NOT NULL DEFAULT 0,
    ADD COLUMN not_found       bigint NOT NULL DEFAULT 0,
    DROP CONSTRAINT load_ledger_counts,
    ADD CONSTRAINT load_ledger_counts
        CHECK (rows_loaded = inserted + updated + unchanged + marked_deleted + not_found),
    ADD CONSTRAINT load_ledger_deleted CHECK (deleted >= marked_deleted);
