-- Rows the new residency rule would refuse, by country.
SELECT country, count(*) AS n
FROM residents
WHERE NOT ({condition})
GROUP BY country
ORDER BY n DESC, country
