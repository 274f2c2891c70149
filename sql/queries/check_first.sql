-- The first few failing rows of a check: their samples (ids) and, with --show-samples, the
-- rows in full. A psycopg.sql template.
SELECT {columns} FROM ({failing}) AS f LIMIT {limit}
