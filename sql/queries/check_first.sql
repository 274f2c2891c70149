-- The first few failing rows of a check: their samples (ids), or, with --show-samples,
-- the rows in full. A psycopg.sql template.
SELECT {column} FROM ({failing}) AS f LIMIT {limit}
