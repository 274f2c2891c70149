-- `pipeline rebalance`: the move ledger, the renumbered ids, the loads of moved rows.
--
-- A move of one country's rows from one shard to another leaves a row here on each side,
-- each written in the transaction that changes that side's residents: 'copied' on the
-- target (with the rows' count and ordered hash, as verified there), 'deleted' on the
-- source. A 'copied' row without its 'deleted' is a move to finish: a re-run compares the
-- source's rows with the recorded hash and, when they are the same rows, deletes them
-- without copying again.
CREATE TABLE rebalance_ledger (
    move_id     uuid        NOT NULL,
    step        text        NOT NULL CONSTRAINT rebalance_ledger_step CHECK (step IN ('copied', 'deleted')),
    country     char(2)     NOT NULL,
    source      text        NOT NULL,  -- shard names, as in the shard map
    target      text        NOT NULL,
    rows_moved  bigint      NOT NULL,
    rows_hash   text        NOT NULL,  -- sql/rebalance/hash.sql over the rows, by their source id
    renumbered  bigint      NOT NULL DEFAULT 0,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (move_id, step)
);

-- Rows that `--on-id-conflict renumber` gave a new id on this shard: the shard and id they
-- had. A later move away takes the row's line with it. No foreign key to residents: its
-- ON DELETE check ran for every row any DELETE removed (measured, 1M rows: 8.3 s, 1.4 s
-- without it), on every shard, renumbered rows or not.
CREATE TABLE rebalance_renumbered (
    id          bigint  PRIMARY KEY,
    old_shard   text    NOT NULL,
    old_id      bigint  NOT NULL,
    move_id     uuid    NOT NULL,
    CONSTRAINT rebalance_renumbered_old UNIQUE (old_shard, old_id)
);

-- Rows a move brought here keep the load_id of the load that wrote them, a load this
-- shard's load_ledger does not know: how many each move brought, for the load
-- reconciliation of `pipeline check` (sql/check/ledger.sql).
CREATE TABLE rebalance_loads (
    move_id     uuid    NOT NULL,
    load_id     uuid    NOT NULL,
    rows_moved  bigint  NOT NULL,
    PRIMARY KEY (move_id, load_id)
);
