-- The rule the residency constraint was last set to (kept in the constraint's comment).
SELECT obj_description(c.oid, 'pg_constraint')
FROM pg_constraint AS c
WHERE c.conrelid = 'residents'::regclass
  AND c.conname = 'residents_residency'
