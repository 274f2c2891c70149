-- --dry-run: what the upsert would do, without writing.
SELECT count(*) FILTER (WHERE r.id IS NULL),
       count(*) FILTER (
           WHERE r.id IS NOT NULL
             AND ((r.country, r.name, r.gender, r.age, r.address)
                  IS DISTINCT FROM (c.country, c.name_v, c.gender_v, c.age_v::smallint, c.address_v)
                  OR (%(source)s::text IS NOT NULL AND r.source IS DISTINCT FROM %(source)s::text)))
FROM load_checked AS c
LEFT JOIN residents AS r ON r.id = c.id_v
WHERE c.reason IS NULL AND NOT c.deleting
