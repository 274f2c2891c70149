-- Residents of this shard by country: what `pipeline plan` compares with the shard map.
SELECT country, count(*) FROM residents GROUP BY country ORDER BY country
