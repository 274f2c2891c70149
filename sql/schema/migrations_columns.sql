-- The columns of the schema in which init creates its tables' `schema_migrations`, and
-- their types (no rows: there is none). Another tool's table of that name (Rails',
-- golang-migrate's) has other columns: init refuses the shard rather than take its versions
-- for this pipeline's.
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute AS a
WHERE a.attrelid = to_regclass(quote_ident(current_schema()) || '.schema_migrations')
  AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY a.attnum
