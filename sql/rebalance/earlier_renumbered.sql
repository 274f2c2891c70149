-- Rows an earlier, unfinished run renumbered here keep the id it gave them: a re-run
-- must find them there, not renumber them again.
UPDATE rebalance_staging AS s
SET new_id = m.id
FROM rebalance_renumbered AS m
WHERE m.old_shard = %(source)s AND m.old_id = s.id
