-- After duplicates.sql found rows to supersede: load_rows (staging.sql) reads
-- them, with a hash join, so that load_checked says duplicate_id for each.
CREATE OR REPLACE TEMP VIEW load_rows AS
SELECT s.*, u.record IS NOT NULL AS superseded
FROM load_staging AS s
LEFT JOIN load_superseded AS u USING (record)
