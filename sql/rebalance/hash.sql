-- The count of a set of rows and an md5 over them, ordered by their id on the source:
-- md5 of each block of 10,000 rows, then md5 of those, so that no one string holds every
-- row (a million rows would make one of about 100 MB). {rows} yields (id, line), `line`
-- being the row as text; source_rows.sql and target_rows.sql spell the same types, so
-- that the same rows give the same text on any server. A psycopg.sql template.
WITH numbered AS (
    SELECT id, line, (row_number() OVER (ORDER BY id) - 1) / 10000 AS block
    FROM ({rows}) AS r
), blocks AS (
    SELECT block, count(*) AS n, md5(string_agg(line, E'\n' ORDER BY id)) AS h
    FROM numbered
    GROUP BY block
)
SELECT coalesce(sum(n), 0)::bigint, md5(coalesce(string_agg(h, '' ORDER BY block), ''))
FROM blocks
