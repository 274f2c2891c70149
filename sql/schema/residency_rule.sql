-- The rule the residency constraint was last set to (kept in the constraint's comment), and
-- how many lists of codes its condition holds (pipeline.schema.LIST_MAX).
SELECT obj_description(c.oid, 'pg_constraint'),
       array_length(regexp_split_to_array(pg_get_constraintdef(c.oid), 'ARRAY\['), 1) - 1
FROM pg_constraint AS c
WHERE c.conrelid = 'residents'::regclass
  AND c.conname = 'residents_residency'
