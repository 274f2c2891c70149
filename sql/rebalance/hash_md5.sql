-- The digest earlier versions recorded for a move (rebalance_ledger.rows_hash, 32 hex
-- characters): read only to finish a move such a version copied and did not delete
-- (pipeline.move.delete); new moves record hash.sql's. The count of a set of rows and a hash
-- over them in the order of their id on the source: the md5 of each row, then the md5 of
-- those of each block of ids (id >> 14: at most 16,384 rows, so that no one string holds
-- every row), then the md5 of the blocks' in order. {rows} yields (id, line), as for
-- hash.sql. A psycopg.sql template.
SELECT coalesce(sum(n), 0)::bigint, md5(coalesce(string_agg(h, '' ORDER BY block), ''))
FROM (
    SELECT id >> 14 AS block, count(*) AS n, md5(string_agg(md5(line), '' ORDER BY id)) AS h
    FROM ({rows}) AS r
    GROUP BY 1
) AS blocks
