-- One country's rows on a move's source, in COPY's binary format (the target's staging
-- table takes it as it comes: same types, no text to parse). A psycopg.sql template:
-- {country} is a literal (pipeline.copyout sends the statement as it is).
COPY (
    SELECT id, country, name, gender, age, address, load_id, loaded_at, source
    FROM residents
    WHERE country = {country}
) TO STDOUT (FORMAT binary)
