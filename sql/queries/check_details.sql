-- --show-samples: the first failing rows in full (a psycopg.sql template).
SELECT detail FROM ({failing}) AS f LIMIT {limit}
