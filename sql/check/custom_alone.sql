-- A custom_sql check's own query, planned and not run, when the check's query (custom.sql,
-- around it) failed at a place in its text: a mistake in the user's SQL is then reported at
-- its place in that SQL, not at the wrapper's `) AS r`. COSTS OFF: a user's query that
-- begins with ANALYZE is then a syntax error, not a query run. A psycopg.sql template.
EXPLAIN (COSTS OFF) {custom}
