COPY load_staging (record, line, country, country_raw, id, name, gender, age, address) FROM STDIN
