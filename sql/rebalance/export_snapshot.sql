-- The first statement of a move's transaction on its source: that transaction's snapshot
-- (REPEATABLE READ), for the second session that hashes and deletes the rows while they
-- are copied (rebalance/use_snapshot.sql).
SELECT pg_export_snapshot()
