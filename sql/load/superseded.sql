-- After duplicates.sql found rows to supersede: each staged one is marked, so that
-- load_checked (staging.sql) says duplicate_id for it. Most files have none, and then no
-- staged row is written twice. The row count is the file's duplicate_id rejects.
UPDATE load_staging AS s
SET superseded = true
FROM load_superseded AS u
WHERE s.record = u.record
