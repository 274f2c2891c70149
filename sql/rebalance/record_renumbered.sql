-- Where the renumbered rows came from. An id already here is a line a row deleted by hand
-- left behind, for the same (shard, id) (earlier_renumbered.sql gave it that id again).
INSERT INTO rebalance_renumbered (id, old_shard, old_id, move_id)
SELECT new_id, %(source)s, id, %(move_id)s
FROM rebalance_staging
WHERE new_id IS NOT NULL AND NOT present
ON CONFLICT DO NOTHING
