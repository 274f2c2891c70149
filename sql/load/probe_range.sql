-- The ids the shard holds in a batch's id range (an index-only scan), for a batch whose
-- ids fill much of their range; the client keeps those of the batch. One text value of
-- comma-separated ids: split by pyarrow, where a row per id costs a Python object each.
SELECT string_agg(id::text, ',') FROM residents WHERE id BETWEEN %s AND %s
