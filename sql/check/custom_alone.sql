-- A custom_sql check's own query, planned and not run, when the check's query (custom.sql,
-- around it) failed: a mistake in the user's SQL is then reported at its place in that SQL,
-- not at the wrapper's `) AS r`. A psycopg.sql template.
EXPLAIN {custom}
