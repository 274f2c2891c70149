-- Which of these names (the tables, indexes and constraints the migrations create) are taken in
-- the schema init creates them in: on a shard never initialised, another application's.
SELECT name
FROM unnest(%(names)s::text[]) AS name
WHERE to_regclass(quote_ident(current_schema()) || '.' || quote_ident(name)) IS NOT NULL
   -- a table's row type takes its name too: a type of that name is in the way as well
   OR to_regtype(quote_ident(current_schema()) || '.' || quote_ident(name)) IS NOT NULL
ORDER BY name
