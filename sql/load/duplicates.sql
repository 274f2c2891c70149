-- The same id twice for this shard in one file: the last one wins, each earlier
-- one is rejected (load_checked then says duplicate_id for it).
INSERT INTO load_superseded (record)
SELECT c.record
FROM load_checked AS c
JOIN (
    SELECT id_v, max(record) AS last_record
    FROM load_checked
    WHERE reason IS NULL AND id_v IS NOT NULL
    GROUP BY id_v
    HAVING count(*) > 1
) AS d USING (id_v)
WHERE c.reason IS NULL
  AND c.record < d.last_record
