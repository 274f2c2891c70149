-- The rows the checks refused, with the fields as they were read, and the name as the rules
-- gave it (name_v), which pipeline.erased looks up: an erased person's name quotes nothing.
SELECT record, line, reason,
       id, coalesce(country_raw, country), name, gender, age, address, name_v
FROM load_checked
WHERE reason IS NOT NULL
ORDER BY record
