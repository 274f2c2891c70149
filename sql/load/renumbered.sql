-- The ids `pipeline rebalance --on-id-conflict renumber` took from residents it moved here,
-- because this shard held them for others: (the old id, the moved resident's country, its
-- new id, its source). A load's record of that id and country means the moved resident,
-- unless the load names another source than the resident's: it is refused
-- (pipeline.renumbered), not written over the other one. Empty but after such a move.
SELECT r.old_id, l.country, r.id, resident.source
FROM rebalance_renumbered AS r
JOIN rebalance_ledger AS l ON l.move_id = r.move_id AND l.step = 'copied'
LEFT JOIN residents AS resident ON resident.id = r.id
ORDER BY r.id
