-- Groups of residents sharing the same values of the columns; a sample names the group's
-- size and a few of its ids, never the whole group.
SELECT count(*) || ' rows, ids ' || array_to_string((array_agg(id ORDER BY id))[1:5], ',')
           || CASE WHEN count(*) > 5 THEN ',...' ELSE '' END AS sample,
       jsonb_build_object('rows', count(*), 'ids', (array_agg(id ORDER BY id))[1:20]) AS detail
FROM residents AS r
GROUP BY {columns}
HAVING count(*) > 1
