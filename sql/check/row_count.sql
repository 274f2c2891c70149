-- One failing "row" when the shard's row count is outside the range.
SELECT count(*)::text || {expected} AS sample, jsonb_build_object('rows', count(*)) AS detail
FROM residents
HAVING count(*) NOT BETWEEN {min} AND {max}
