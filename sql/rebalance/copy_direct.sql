-- A move's rows straight into the target's residents, when it holds none of the country:
-- a taken id fails the COPY (the primary key), and the move takes the staging way instead.
COPY residents (id, country, name, gender, age, address, load_id, loaded_at, source)
FROM STDIN (FORMAT binary)
