-- The spooled rows into staging.sql's table (pipeline/shard_rows.py writes them as CSV).
COPY load_staging (record, line, country, country_raw, id, name, gender, age, address,
                   id_v, name_v, gender_v, age_v, address_v, deleting, unquoted)
FROM STDIN (FORMAT csv)
