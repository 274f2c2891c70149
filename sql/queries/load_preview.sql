-- --dry-run: what the upsert would do, without writing.
SELECT count(*) FILTER (WHERE r.id IS NULL),
       count(*) FILTER (
           WHERE r.id IS NOT NULL
             AND (r.country, r.name, r.gender, r.age, r.address)
                 IS DISTINCT FROM (c.country, c.name, c.gender, c.age::smallint, c.address))
FROM load_checked AS c
LEFT JOIN residents AS r ON r.id = c.id
WHERE c.reason IS NULL
