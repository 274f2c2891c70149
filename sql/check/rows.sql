-- The residents that fail a row condition (not_null, accepted_values, between, residency).
SELECT {sample} AS sample, to_jsonb(r) - 'person_key' AS detail
FROM residents AS r
WHERE {condition}
