-- The load's working tables, made once a connection (pipeline/shard_link.py, as it connects)
-- and emptied at every commit: made for every file, as they were, they cost each shard some
-- 11 ms a file (catalog rows written and removed), a third of a small file's time.
-- Each file's transaction starts with them empty: a commit empties them, and a file rolled
-- back after rows went into them is followed by staging_empty.sql.

-- The rows of one file for this shard that do not go straight into residents
-- (pipeline/shard_rows.py): rows whose id the shard holds, rows without an id, or, after a
-- conflict, all of them. The client has already applied the rules (pipeline/validate.py):
-- `*_v` are the normalised values, the unsuffixed columns the fields as read (for the
-- rejects file, should a later row with the same id supersede the row); `country` is the
-- code, `country_raw` the spelling in the file.
CREATE TEMP TABLE load_staging (
    record       bigint NOT NULL,
    line         bigint,
    country      char(2) NOT NULL,
    country_raw  text,
    id           text,
    name         text,
    gender       text,
    age          text,
    address      text,
    id_v         bigint,
    name_v       text,  -- NULL only for a delete marker
    gender_v     text,
    age_v        smallint,
    address_v    text,
    deleting     boolean NOT NULL,  -- a delete marker (pipeline/validate.py): delete_marked.sql
    unquoted     boolean NOT NULL DEFAULT false,  -- an erased name (pipeline.erased): quote none
    superseded   boolean NOT NULL DEFAULT false  -- a later row of its id: superseded.sql
) ON COMMIT DELETE ROWS;

-- The ids and record numbers of the rows the shard holds unchanged (copy_seen.sql).
CREATE TEMP TABLE load_seen (id bigint NOT NULL, record bigint NOT NULL) ON COMMIT DELETE ROWS;

-- The ids a snapshot's probes found in their unbroken range that the file does not give
-- (copy_missing.sql, gone_in_range.sql).
CREATE TEMP TABLE load_missing (id bigint NOT NULL) ON COMMIT DELETE ROWS;

-- The ids of the file's records the rules refused, for a snapshot (copy_kept.sql): a
-- refused record is no sign that its resident left (snapshot_delete.sql).
CREATE TEMP TABLE load_kept (id bigint NOT NULL) ON COMMIT DELETE ROWS;

-- Earlier rows of an id that comes again later in the file (duplicates.sql).
CREATE TEMP TABLE load_superseded (record bigint PRIMARY KEY) ON COMMIT DELETE ROWS;

-- Each staged row with why it is refused (`reason`; NULL for a row to load): the rules
-- refused the others before they were sent, so only an id superseded later in the file.
-- A view, so that counting, the rejects and the upsert read one definition.
CREATE TEMP VIEW load_checked AS
SELECT
    r.*,
    CASE WHEN r.superseded THEN 'duplicate_id' END AS reason
FROM load_staging AS r
