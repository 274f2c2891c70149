-- A database of the embedded server, made on first use.
CREATE DATABASE {database}
