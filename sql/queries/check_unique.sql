-- Groups of residents sharing the same values of the columns.
SELECT 'ids ' || string_agg(id::text, ',' ORDER BY id) AS sample,
       jsonb_agg(to_jsonb(r)) AS detail
FROM residents AS r
GROUP BY {columns}
HAVING count(*) > 1
