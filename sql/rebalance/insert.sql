-- The staged rows the target does not hold, with their provenance (the load that wrote
-- them, and when) as on the source.
INSERT INTO residents (id, country, name, gender, age, address, load_id, loaded_at)
SELECT coalesce(new_id, id), country, name, gender, age, address, load_id, loaded_at
FROM rebalance_staging
WHERE NOT present
