-- Everything `pipeline report` needs from one shard, in one scan: residents by country, by
-- gender, by age band, and in all, with the sum and count of known ages for an exact average.
-- `grouping` says which set a row belongs to: 3 country, 5 gender, 6 age band, 7 the total.
SELECT
    GROUPING(country, gender, band) AS grouping,
    country,
    gender,
    band,
    count(*) AS residents,
    coalesce(sum(age), 0) AS age_sum,
    count(age) AS age_count
FROM (
    SELECT
        country::text AS country,
        gender,
        CASE
            WHEN age IS NULL THEN NULL
            WHEN age < 18 THEN '0-17'
            WHEN age < 35 THEN '18-34'
            WHEN age < 55 THEN '35-54'
            WHEN age < 75 THEN '55-74'
            ELSE '75+'
        END AS band,
        age
    FROM residents
) AS r
GROUP BY GROUPING SETS ((country), (gender), (band), ())
