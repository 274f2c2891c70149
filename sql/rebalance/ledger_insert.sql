INSERT INTO rebalance_ledger (move_id, step, country, source, target, rows_moved, rows_hash, renumbered)
VALUES (%(move_id)s, %(step)s, %(country)s, %(source)s, %(target)s, %(rows)s, %(hash)s, %(renumbered)s)
