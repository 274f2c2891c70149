-- The rows the checks refused, with the fields as they were read.
SELECT record, line, reason,
       id, coalesce(country_raw, country), name, gender, age, address
FROM load_checked
WHERE reason IS NOT NULL
ORDER BY record
