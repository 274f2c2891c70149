-- A query's rows in COPY's binary format, which numpy reads as it comes. A psycopg.sql
-- template.
COPY ({rows}) TO STDOUT (FORMAT binary)
