-- Is there a database of this name on the embedded server?
SELECT 1 FROM pg_database WHERE datname = %s
