INSERT INTO rebalance_renumbered (id, old_shard, old_id, move_id)
SELECT new_id, %(source)s, id, %(move_id)s
FROM rebalance_staging
WHERE new_id IS NOT NULL AND NOT present
