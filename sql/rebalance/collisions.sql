-- How many staged rows collide, and the first (the parameter) of their ids on the source.
SELECT count(*), (array_agg(id ORDER BY id))[1:%s]
FROM rebalance_staging
WHERE collides
