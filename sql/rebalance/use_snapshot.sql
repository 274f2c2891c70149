-- The first statement of the source's second session in a move: the snapshot the move's
-- transaction exported (rebalance/export_snapshot.sql), so that the rows it hashes are the
-- rows copied and deleted. A psycopg.sql template: {snapshot} is a literal (a utility
-- statement takes no parameters).
SET TRANSACTION SNAPSHOT {snapshot}
