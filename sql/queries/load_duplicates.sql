-- The same id twice for this shard in one file: the last one wins, each earlier
-- one is rejected.
UPDATE load_checked AS c
SET reason = 'duplicate_id'
FROM (
    SELECT id, max(record) AS last_record
    FROM load_checked
    WHERE reason IS NULL AND id IS NOT NULL
    GROUP BY id
    HAVING count(*) > 1
) AS d
WHERE c.id = d.id
  AND c.reason IS NULL
  AND c.record < d.last_record
