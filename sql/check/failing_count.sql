-- One row check's failing rows, counted in the one scan of counts.sql: {condition} is the
-- check's condition (not_null.sql, accepted_values.sql, between.sql, residency.sql).
count(*) FILTER (WHERE {condition})
