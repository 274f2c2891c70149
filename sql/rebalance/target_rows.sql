-- The rows a move's target holds for the staged ones (under their new id if renumbered),
-- with the id they have on the source, for hash.sql: as text as in source_rows.sql.
SELECT s.id,
       concat_ws(',', s.id, quote_literal(r.country), quote_literal(r.name),
                 quote_nullable(r.gender), quote_nullable(r.age), quote_nullable(r.address))
           AS line
FROM rebalance_staging AS s
JOIN residents AS r ON r.id = coalesce(s.new_id, s.id)
