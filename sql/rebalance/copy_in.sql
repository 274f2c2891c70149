COPY rebalance_staging (id, country, name, gender, age, address, load_id, loaded_at, source)
FROM STDIN (FORMAT binary)
