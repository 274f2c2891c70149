-- The rows the checks refused, with the fields as they were read.
SELECT c.record, s.line, c.reason,
       s.id, coalesce(s.country_raw, s.country), s.name, s.gender, s.age, s.address
FROM load_checked AS c
JOIN load_staging AS s USING (record)
WHERE c.reason IS NOT NULL
ORDER BY c.record
