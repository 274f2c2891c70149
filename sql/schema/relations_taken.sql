-- Which of these relations (the tables and indexes the migrations create) already exist in
-- the schema init creates them in: on a shard never initialised, another application's.
SELECT name
FROM unnest(%(names)s::text[]) AS name
WHERE to_regclass(quote_ident(current_schema()) || '.' || quote_ident(name)) IS NOT NULL
ORDER BY name
