-- How many rows of source %(source)s this shard held before this file (what --max-deletes'
-- percentage is of): the rows it holds now, less the new ones the file's direct COPY wrote.
SELECT count(*)
FROM residents AS r
WHERE r.source = %(source)s::text
  AND NOT (r.load_id IS NOT DISTINCT FROM %(load_id)s::uuid AND r.loaded_at = now())
