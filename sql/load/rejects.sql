-- The rows the checks refused, with the fields as they were read, and whether the row
-- bears an erased person's name (pipeline.erased), whose reject quotes none of them.
SELECT record, line, reason,
       id, coalesce(country_raw, country), name, gender, age, address, unquoted
FROM load_checked
WHERE reason IS NOT NULL
ORDER BY record
