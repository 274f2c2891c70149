-- keys.sql for PostgreSQL 13, which has no TID range scan: the rows are gathered in
-- groups by their id instead, by hashing (which spills to disk past hash_mem
-- rather than hold the table in memory). A psycopg.sql template.
SELECT
    {aggregates}
FROM residents
GROUP BY id % {groups}
