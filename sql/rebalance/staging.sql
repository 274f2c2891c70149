-- The rows of a move as they arrive on the target, before anything is written to
-- residents. `new_id`: the id the row gets here when renumbered (an earlier run's, from
-- rebalance_renumbered, or a new one); `present`: the target holds a row with that id;
-- `collides`: and it is a different row (another person, or the same one changed).
CREATE TEMP TABLE rebalance_staging (
    id         bigint NOT NULL,
    country    char(2) NOT NULL,
    name       text NOT NULL,
    gender     text,
    age        smallint,
    address    text,
    load_id    uuid,
    loaded_at  timestamptz NOT NULL,
    source     text,
    new_id     bigint,
    present    boolean NOT NULL DEFAULT false,
    collides   boolean NOT NULL DEFAULT false
) ON COMMIT DROP
