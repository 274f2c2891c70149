-- A snapshot's output is the same whatever the server's or role's settings: UTC, ISO dates
-- (the client encoding is UTF-8 already, from the connection).
SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'
