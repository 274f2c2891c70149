-- schema: the columns the pipeline needs, and its latest schema version
select e.col
from (values
    ('id', 'bigint'), ('country', 'character'), ('name', 'text'), ('gender', 'text'),
    ('age', 'smallint'), ('address', 'text'), ('load_id', 'uuid'),
    ('loaded_at', 'timestamp with time zone')
) as e (col, typ)
where not exists (
    select 1 from information_schema.columns as c
    where c.table_schema = current_schema() and c.table_name = 'residents'
      and c.column_name = e.col and c.data_type = e.typ
)
union all
select 'schema version ' || max(version)
from schema_migrations
having max(version) < 3
