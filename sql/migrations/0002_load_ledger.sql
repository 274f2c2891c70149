-- One row per (load, source file) on each shard the file had rows for, written in
-- the same transaction as the rows themselves: the ledger and the data never disagree.
CREATE TABLE load_ledger (
    ledger_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    load_id        uuid        NOT NULL,
    source_file    text        NOT NULL,
    source_sha256  char(64)    NOT NULL,
    rows_read      bigint      NOT NULL DEFAULT 0,  -- records of the file routed to this shard
    rows_loaded    bigint      NOT NULL DEFAULT 0,
    rows_rejected  bigint      NOT NULL DEFAULT 0,
    inserted       bigint      NOT NULL DEFAULT 0,
    updated        bigint      NOT NULL DEFAULT 0,
    unchanged      bigint      NOT NULL DEFAULT 0,
    forced         boolean     NOT NULL DEFAULT false,
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT load_ledger_counts CHECK (rows_loaded = inserted + updated + unchanged)
);

-- "Has this shard already loaded this file?" is asked before every load.
CREATE INDEX load_ledger_sha256_idx ON load_ledger (source_sha256);
CREATE INDEX load_ledger_finished_idx ON load_ledger (finished_at DESC);
