-- One shard's residents for Parquet and DataFrames, packed into columns by the server: a
-- COPY row for every {rows} residents in id order, holding their count and each column's
-- values packed into one bytea ({packed}: extract/packed_fixed.sql, packed_sized.sql,
-- packed_text.sql, packed_smallint.sql), which pipeline/columnar.py unpacks into Arrow
-- arrays with a few numpy calls. As CSV, the client parsed every field of every row (measured on 600k rows:
-- 0.6 s of client CPU against 0.2 s, for 0.05 s more of server CPU).
-- `chunk` walks the id index to each chunk's first id (the first id, then {skip} ids on:
-- a step of the recursion reads ids only); each chunk is then read from its first id,
-- {rows} rows in id order. The recursion's rows are ids, not packed rows: a CTE keeps every
-- row it makes, and packed rows would go to the server's temporary files.
-- No ORDER BY at the end, which would sort the packed rows: they come in the recursion's
-- order, and pipeline/columnar.py checks that the ids ascend, within and across chunks.
-- {filter} is empty or `AND country = ANY(...)`; {after} is empty or `AND id > N`, for a
-- stream resumed after the last chunk sent (pipeline.packed.resumable).
WITH RECURSIVE chunk AS (
    SELECT min(id) AS first FROM residents WHERE TRUE {filter} {after}
  UNION ALL
    SELECT (SELECT id FROM residents WHERE id > chunk.first {filter} ORDER BY id OFFSET {skip} LIMIT 1)
    FROM chunk
    WHERE chunk.first IS NOT NULL
)
SELECT packed.*
FROM chunk
CROSS JOIN LATERAL (
    SELECT count(*), {packed}
    FROM (
        SELECT {fields} FROM residents WHERE id >= chunk.first {filter} ORDER BY id LIMIT {rows}
    ) AS resident
) AS packed
WHERE chunk.first IS NOT NULL
