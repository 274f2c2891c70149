-- A snapshot's output is the same whatever the server's or role's settings: UTC (dates are
-- ISO on every connection already, and the client encoding UTF-8: pipeline.db).
SET TIME ZONE 'UTC'
