-- The shard's move ledger, as the first statement of a read's snapshot (it begins the
-- snapshot the rows are then read in): pipeline.moves_seen compares the shards' ledgers so
-- that rows a rebalance has copied and not yet deleted are not read on both shards. A
-- handful of rows a move: read whole.
SELECT move_id::text, step, country, source, target, rows_moved, at
FROM rebalance_ledger
