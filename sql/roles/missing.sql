-- Which of the group roles do not exist yet (roles are cluster-wide: two shards on one
-- server share them).
SELECT r.name
FROM unnest(%s::text[]) AS r (name)
WHERE NOT EXISTS (SELECT 1 FROM pg_roles AS p WHERE p.rolname = r.name)
