-- The ids `pipeline rebalance --on-id-conflict renumber` took from residents it moved here,
-- because this shard held them for others: (the old id, the moved resident's country, its
-- new id, its source, whether the resident who holds the old id here now is of that country
-- too). A load's record of that id and country means the moved resident, unless the load
-- names another source than the resident's: it is refused (pipeline.renumbered), not
-- written over the other one. Empty but after such a move.
SELECT r.old_id, l.country, r.id, moved.source, holder.country = l.country
FROM rebalance_renumbered AS r
JOIN rebalance_ledger AS l ON l.move_id = r.move_id AND l.step = 'copied'
LEFT JOIN residents AS moved ON moved.id = r.id
LEFT JOIN residents AS holder ON holder.id = r.old_id
ORDER BY r.id
