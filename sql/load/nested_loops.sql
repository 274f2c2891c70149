-- After a snapshot's deletion: the planner's own choice again (no_nested_loops.sql).
SET LOCAL enable_nestloop TO DEFAULT
