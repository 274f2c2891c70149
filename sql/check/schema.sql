-- Columns the code needs that are missing or of another type, and a schema version that
-- is not the latest. {expected} is every column of residents with its type, as
-- information_schema spells it: ('id', 'bigint'), ... (pipeline/columns.py).
SELECT 'column ' || e.col || ' ' || e.typ || ' missing' AS sample, NULL::jsonb AS detail
FROM (VALUES
    {expected}
) AS e (col, typ)
WHERE NOT EXISTS (
    SELECT 1 FROM information_schema.columns AS c
    WHERE c.table_schema = current_schema() AND c.table_name = 'residents'
      AND c.column_name = e.col AND c.data_type = e.typ
)
UNION ALL
SELECT 'schema version ' || v || ', expected ' || {latest}, NULL
FROM (SELECT coalesce(max(version), 0) AS v FROM schema_migrations) AS m
WHERE v <> {latest}
