-- The count of a set of rows and a hash over them in the order of their id on the source:
-- the md5 of each row, then the md5 of those of each block of ids (id >> 14: at most 16,384
-- rows, so that no one string holds every row), then the md5 of the blocks' in order.
-- Blocks by id, not by row number, spare a sort of every row (measured on 1M rows: 2.5 s
-- against 3.9 s). {rows} yields (id, line), `line` being the row as text: source_rows.sql
-- and target_rows.sql spell it the same way from the same types, so that the same rows give
-- the same text on any server. A psycopg.sql template.
SELECT coalesce(sum(n), 0)::bigint, md5(coalesce(string_agg(h, '' ORDER BY block), ''))
FROM (
    SELECT id >> 14 AS block, count(*) AS n, md5(string_agg(md5(line), '' ORDER BY id)) AS h
    FROM ({rows}) AS r
    GROUP BY 1
) AS blocks
