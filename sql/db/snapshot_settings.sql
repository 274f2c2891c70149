-- A snapshot's output is the same whatever the server's or role's settings: UTC (dates are
-- ISO on every connection already, and the client encoding UTF-8: pipeline.db). And a
-- query for countries a shard's residency constraint refuses is answered from its plan,
-- without reading the table (an extract of some countries asks every shard: pipeline.extract).
SELECT set_config('TimeZone', 'UTC', false), set_config('constraint_exclusion', 'on', false)
