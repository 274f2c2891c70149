-- The staged rows the target does not hold, with their provenance (the load that wrote
-- them, when, and for which source) as on the source.
INSERT INTO residents (id, country, name, gender, age, address, load_id, loaded_at, source)
SELECT coalesce(new_id, id), country, name, gender, age, address, load_id, loaded_at, source
FROM rebalance_staging
WHERE NOT present
