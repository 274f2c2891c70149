-- On a move's source, before its rows go: the lines of rebalance_renumbered for them (rows
-- an earlier move renumbered here). The semi-join reads nothing when the table is empty.
DELETE FROM rebalance_renumbered AS m
WHERE EXISTS (SELECT FROM residents AS r WHERE r.id = m.id AND r.country = %(country)s)
