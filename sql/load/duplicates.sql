-- The same id twice for this shard in one file: the last one wins, each earlier
-- one is rejected (load_checked then says duplicate_id for it). The ids are those staged
-- and those the client found unchanged (load_seen); rows copied straight into residents
-- cannot repeat an id (the COPY would have failed).
WITH given AS (
    SELECT id_v AS id, record FROM load_staging WHERE id_v IS NOT NULL
    UNION ALL
    SELECT id, record FROM load_seen
)
INSERT INTO load_superseded (record)
SELECT g.record
FROM given AS g
JOIN (
    SELECT id, max(record) AS last_record
    FROM given
    GROUP BY id
    HAVING count(*) > 1
) AS d USING (id)
WHERE g.record < d.last_record
