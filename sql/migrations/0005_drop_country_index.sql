-- The index on country cost every load more than it gave back. Measured on one server
-- (2026-11-29, a busy 2-core machine, three interleaved rounds): writing 1M rows into a
-- table shaped like residents took 10.6-12.6 s with it and 7.3-8.2 s without; on a
-- 10M-row shard holding 30 countries, `extract --country`'s query took as long without it
-- (JP, 3% of the rows: 2.4-2.5 s with, 2.0-2.3 s without; DE, 16%: 4.7-5.3 s with,
-- 4.5-6.1 s without): a country's rows are spread over every page, so the server reads
-- them all either way. `report` and the checks scan every row anyway. A shard whose rows
-- are clustered by country (each loaded from a file of its own), queried often for one
-- rare country, can have it back: CREATE INDEX ON residents (country).
DROP INDEX IF EXISTS residents_country_idx;
